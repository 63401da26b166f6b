"""The suite's one image reader (every caller: datasets, manifest builders, src.restore), and image writing.

Reading goes through one gate, so a file that one caller accepts every caller accepts, and a refusal has the same
message everywhere (:class:`ImageReadError`: the file, what is wrong, what was expected, and a ``kind``):

* :func:`probe_image` reads the **header** only (size, mode, bit depth, EXIF orientation): missing files, non-images,
  oversized images and unsupported modes are known from it (fast enough to run over a whole dataset);
* :func:`decode_image` decodes the pixels (the only way to find a **truncated** file) as ``uint8`` / ``uint16``
  H×W×C arrays, C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA), upright;
* :func:`read_image` (restoration) gives float32 RGB in [0, 1] plus what is needed to write the result back in the
  input's form (:class:`LoadedImage`); ``src.data.image_io`` puts the datasets' policy (8-bit RGB, or ``convert``)
  on top of the same two functions.

==================  ==========================================================  ==================================
input               restored as                                                 written back as
==================  ==========================================================  ==================================
RGB (8-bit)         RGB                                                         RGB
grayscale L / 1     the gray channel replicated to RGB                          L (luma of the RGB output, BT.601)
RGBA, LA, PA        RGB (resp. gray) restored; the alpha channel is not         RGBA / LA, the alpha unchanged
                    touched
palette P           expanded to RGB (RGBA when it has a transparent colour)     RGB / RGBA (no palette)
CMYK, YCbCr, LAB    converted to RGB by Pillow                                  RGB
16-bit PNG / TIFF   uint16 / 65535 (full precision; RGB, RGBA, gray, gray+alpha) 16-bit PNG / TIFF, same channels
EXIF orientation    rotated / flipped upright (as ``ImageOps.exif_transpose``)  upright, without an orientation tag
multi-frame         the first frame only (noted)                                a single image
==================  ==========================================================  ==================================

Refused (one code, one message): a missing file or a folder, a file Pillow cannot identify or open, more than
``max_pixels`` pixels (default: Pillow's decompression-bomb error threshold), truncated or corrupt pixel data,
32-bit float images and integer images outside 0…65535.

Writing (:func:`write_image`) keeps the format of the output name's extension, the channel layout and bit depth
above, and the ICC colour profile (other EXIF metadata is not copied). Formats that cannot hold what the input
had fall back with a note: JPEG has no alpha (dropped) and no 16 bits (8 bits written). Every file is written
atomically (:mod:`src.utils.atomic`): a killed run leaves no truncated image.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from src.utils.atomic import atomic_write_bytes

# what a folder is scanned for (files given by name are tried whatever their extension)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm",
                    ".tga")
# One memory budget for restoring an image, from which the pixel limit is derived. A restore holds several
# full-size copies of the image (decoded uint8/uint16, float32 input, padded input, float32 output and blending
# weights, the uint8 result being encoded): ~47 bytes per pixel, measured as the 7.9 GB peak of a 13000×13000
# restore on CPU (issue 23). The default budget, 4 GiB, allows ~89 million pixels (Pillow's own bomb threshold).
RESTORE_BYTES_PER_PIXEL = 48
DEFAULT_MEMORY_BUDGET = 4 << 30


def max_pixels_for_budget(budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> int:
    """The largest image (pixels) whose restore fits ``budget_bytes`` of memory, full-size copies included."""
    return max(1, int(budget_bytes) // RESTORE_BYTES_PER_PIXEL)


DEFAULT_MAX_PIXELS = max_pixels_for_budget()
ORIENTATION_TAG = 0x0112
_RGB_CONVERTIBLE = {"RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_GRAY16_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_SUPPORTED_MODES = {"1", "L", "LA", "La", "P", "PA", "RGBA", "RGBa"} | _RGB_CONVERTIBLE | _GRAY16_MODES
_FORMATS = "a PNG, JPEG, BMP, TIFF, WebP, GIF, PPM or TGA image"
_OPEN_LOCK = threading.Lock()
# max_pixels (checked on every read) replaces Pillow's warning; its error is caught and re-checked in _open
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageReadError(ValueError):
    """A file that cannot be read as an image.

    ``path``; ``problem``: what is wrong; ``expected``: what would be right (or None); ``kind``: ``missing``,
    ``unreadable``, ``truncated``, ``too_large``, ``unsupported`` (the reader's), ``mode`` (a caller's policy, e.g.
    the datasets' 8-bit RGB) or ``size_mismatch``; ``where``: optional context such as a manifest line. ``reason``
    is the one-line message without the path.
    """

    def __init__(self, path: str | os.PathLike, problem: str | None = None, expected: str | None = None,
                 kind: str = "unreadable", where: str | None = None):
        if problem is None:  # one-string form: torch's DataLoader re-raises a worker's error as type(message)
            self.path, self.problem, self.expected, self.kind, self.where = "", str(path), None, kind, None
            super().__init__(str(path))
            return
        self.path, self.problem, self.expected, self.kind, self.where = str(path), problem, expected, kind, where
        super().__init__(f"{where}: " * bool(where) + f"{self.path}: {self.reason}")

    @property
    def reason(self) -> str:
        return self.problem + (f" (expected {self.expected})" if self.expected else "")

    def at(self, where: str) -> ImageReadError:
        """The same error, with ``where`` (e.g. ``"data_manifests/lol_train.csv line 12"``) in front."""
        return ImageReadError(self.path, self.problem, self.expected, self.kind, where)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: the upright size, Pillow's mode and format, bits per channel, EXIF orientation and
    the number of frames."""

    path: str
    width: int
    height: int
    mode: str
    format: str | None
    bits: int = 8
    orientation: int = 1
    frames: int = 1

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


@dataclass
class DecodedImage:
    """Decoded pixels, upright: ``pixels`` ``uint8`` or ``uint16`` H×W×C with C = 1 (gray), 2 (gray + alpha), 3 (RGB)
    or 4 (RGBA); ``bit_depth`` 8 or 16 (of ``pixels``); the header ``info``; the ICC profile; ``notes`` (what was
    converted or dropped)."""

    pixels: np.ndarray
    info: ImageInfo
    icc_profile: bytes | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8


@dataclass
class LoadedImage:
    """An upright image ready for a model, and how to write its restoration back.

    ``rgb``: float32 H×W×3 in [0, 1]. ``alpha``: float32 H×W in [0, 1] or None. ``grayscale``: the input had one
    colour channel. ``bit_depth``: 8 or 16. ``format``: Pillow's name of the input format. ``orientation``: the
    EXIF orientation that was undone (1: none). ``notes``: what was converted or dropped.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    grayscale: bool = False
    bit_depth: int = 8
    format: str | None = None
    mode: str = "RGB"
    orientation: int = 1
    icc_profile: bytes | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


# ---------------------------------------------------------------------------------------------------------- reading
def is_image_file(path: str | os.PathLike) -> bool:
    """True for a visible file name whose extension is one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Undo EXIF orientation ``orientation`` (1–8) on an H×W[×C] array, as ``ImageOps.exif_transpose`` does."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],                        # mirrored left-right
        3: lambda a: a[::-1, ::-1],                     # rotated 180°
        4: lambda a: a[::-1],                           # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),                  # transposed
        6: lambda a: np.rot90(a, -1),                   # rotated 90° (needs 90° clockwise)
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),      # transversed
        8: lambda a: np.rot90(a, 1),                    # rotated 270° (needs 90° counter-clockwise)
    }
    return np.ascontiguousarray(ops.get(int(orientation), ops[1])(array))


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None if ``path`` is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _read_png16(path: Path, color_type: int) -> np.ndarray:
    """A 16-bit colour (or gray+alpha) PNG at full precision, as RGB(A) or LA uint16 (Pillow keeps 8 bits only)."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        raise ImageReadError(path, "OpenCV could not decode this 16-bit PNG (truncated or corrupt)",
                             "a complete, decodable image file", "truncated")
    if arr.ndim == 2:
        return arr
    if color_type == 4:  # gray+alpha: OpenCV gives B=G=R=gray, A
        return np.stack([arr[..., 0], arr[..., 3]], axis=-1) if arr.shape[2] == 4 else arr[..., 0]
    return arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]


def _read_tiff16(path: Path) -> np.ndarray:
    import tifffile

    arr = np.asarray(tifffile.imread(path, key=0))
    if arr.ndim == 3 and arr.shape[0] in (2, 3, 4) and arr.shape[-1] not in (2, 3, 4):  # planar
        arr = np.moveaxis(arr, 0, -1)
    if arr.dtype != np.uint16 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] > 4):
        raise ImageReadError(path, f"unsupported 16-bit TIFF layout {arr.shape} {arr.dtype}",
                             "gray, gray + alpha, RGB or RGBA", "unsupported")
    return arr


def _open(path: Path) -> Image.Image:
    """Pillow's lazy open, every failure an :class:`ImageReadError`; Pillow's own pixel limit is lifted (the
    callers check ``max_pixels``)."""
    if not path.exists():
        raise ImageReadError(path, "no such file", "an existing image file", "missing")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file", "an image file", "missing")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file", "an image file", "missing")
    try:
        try:
            return Image.open(path)
        except Image.DecompressionBombError:  # over Pillow's limit: reopen without it, max_pixels decides
            with _OPEN_LOCK:
                limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    return Image.open(path)
                finally:
                    Image.MAX_IMAGE_PIXELS = limit
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image (or a format Pillow cannot read)", _FORMATS, "unreadable") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot be read: {e.strerror or e}", _FORMATS, "unreadable") from None
    except Exception as e:  # malformed headers surface as ValueError, SyntaxError, struct.error, …
        raise ImageReadError(path, f"not a readable image: {type(e).__name__}: {e}", _FORMATS,
                             "unreadable") from None


def _unsupported_mode(path: Path, mode: str) -> ImageReadError:
    return ImageReadError(path, f"unsupported image mode {mode!r} (e.g. 32-bit float); convert it to 8- or 16-bit "
                                "RGB/gray first", "an 8- or 16-bit image", "unsupported")


def _png_exif(path: Path) -> bytes | None:
    """The ``eXIf`` chunk of a PNG, found by walking the chunk headers (no decompression), or None."""
    with open(path, "rb") as f:
        f.seek(8)
        while len(head := f.read(8)) == 8:
            length, kind = struct.unpack(">I", head[:4])[0], head[4:]
            if kind == b"eXIf":
                return b"Exif\x00\x00" + f.read(length)
            if kind == b"IEND":
                return None
            f.seek(length + 4, os.SEEK_CUR)
    return None


def _orientation(im: Image.Image, path: Path | None = None) -> int:
    """The EXIF orientation (1–8; 1 when absent or malformed). With ``path``, a PNG's is read from its ``eXIf``
    chunk: Pillow's PNG ``getexif()`` decodes the whole image when the chunk follows the image data."""
    try:
        if im.format == "PNG" and path is not None:
            data = _png_exif(path)
            exif = Image.Exif()
            if data:
                exif.load(data)
        else:
            exif = im.getexif()
        value = int(exif.get(ORIENTATION_TAG, 1) or 1)
    except Exception:  # malformed EXIF: keep the pixels as stored
        return 1
    return value if value in range(1, 9) else 1


def _header(im: Image.Image, path: Path, max_pixels: int | None) -> ImageInfo:
    width, height = im.size
    if im.mode not in _SUPPORTED_MODES:
        raise _unsupported_mode(path, im.mode)
    if max_pixels is not None and width * height > max_pixels:
        need = width * height * RESTORE_BYTES_PER_PIXEL / (1 << 30)
        raise ImageReadError(path, f"{width}×{height} = {width * height:,} pixels is more than the limit of "
                                   f"{max_pixels:,} (restoring it would need ~{need:.1f} GiB of memory at "
                                   f"{RESTORE_BYTES_PER_PIXEL} bytes per pixel)", "a smaller image, or a higher "
                                   "pixel limit (src.restore / src.app: --max-pixels N, 0 for none)", "too_large")
    orientation = _orientation(im, path)
    bits = 8
    try:
        if im.mode in _GRAY16_MODES - {"I"}:
            bits = 16
        elif im.mode in ("I", "F"):
            bits = 32 if im.format != "PNG" else 16  # PNG has no 32-bit mode: Pillow opens 16-bit gray as I
        elif im.format == "PNG" and (png := _png_header(path)) is not None:
            bits = int(png[0])
        elif im.format == "TIFF":
            tag = getattr(im, "tag_v2", {}).get(258)  # BitsPerSample
            if tag:
                bits = int(max(tag) if isinstance(tag, (tuple, list)) else tag)
    except (OSError, ValueError, TypeError) as e:
        raise ImageReadError(path, f"cannot read the header: {e}", _FORMATS, "unreadable") from None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(str(path), width, height, im.mode, im.format, bits, orientation, getattr(im, "n_frames", 1))


def probe_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Header-only check of one image (see the module docstring); raises :class:`ImageReadError`."""
    path = Path(path)
    with _open(path) as im:
        return _header(im, path, max_pixels)


def decode_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode ``path`` fully and upright (see :class:`DecodedImage`); raises :class:`ImageReadError`."""
    path = Path(path)
    with _open(path) as im:
        info = _header(im, path, max_pixels)
        notes = [f"{info.frames} frames: only the first is read"] if info.frames > 1 else []
        icc = im.info.get("icc_profile") or None
        try:
            im.load()
        except Exception as e:  # truncated data: OSError; corrupt streams: ValueError, SyntaxError, zlib.error, …
            raise ImageReadError(path, f"cannot be decoded (truncated or corrupt): {e}",
                                 "a complete, decodable image file", "truncated") from None
        fmt, mode = im.format, im.mode
        png = _png_header(path) if fmt == "PNG" else None
        tiff_bits = im.tag_v2.get(258) if fmt == "TIFF" and hasattr(im, "tag_v2") else None
        tiff_bits = tuple(tiff_bits) if isinstance(tiff_bits, (tuple, list)) else ((tiff_bits,) if tiff_bits else ())
        wide = None
        try:
            if png is not None and png[0] == 16 and png[1] in (2, 4, 6):
                wide = _read_png16(path, png[1])
            elif fmt == "TIFF" and 16 in tiff_bits and mode not in _GRAY16_MODES:
                wide = _read_tiff16(path)
        except ImportError as e:
            notes.append(f"16-bit colour read at 8 bits ({e.name} is not installed)")
        except ImageReadError:
            raise
        except Exception as e:  # tifffile / OpenCV on a corrupt file
            raise ImageReadError(path, f"cannot be decoded (truncated or corrupt): {type(e).__name__}: {e}",
                                 "a complete, decodable image file", "truncated") from None
        if wide is None and mode in _GRAY16_MODES:
            wide = np.asarray(im)
            if wide.dtype not in (np.uint16, np.int32) or (wide.size and (wide.min() < 0 or wide.max() > 65535)):
                raise ImageReadError(path, f"unsupported integer image (mode {mode}, values outside 0…65535)",
                                     "an 8- or 16-bit image", "unsupported")
            wide = wide.astype(np.uint16)
        if wide is not None:
            pixels = wide
        elif mode in ("1", "L"):
            pixels = np.asarray(im.convert("L"))
        elif mode in ("LA", "La"):
            pixels = np.asarray(im.convert("LA"))
        elif mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in im.info
            pixels = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
            notes.append("palette image: written back as " + ("RGBA" if has_alpha else "RGB"))
        elif mode in ("RGBA", "RGBa"):
            pixels = np.asarray(im.convert("RGBA"))
        elif mode in _RGB_CONVERTIBLE:
            pixels = np.asarray(im if mode == "RGB" else im.convert("RGB"))
            if mode not in ("RGB", "RGBX"):
                notes.append(f"{mode} converted to RGB")
        else:  # pragma: no cover - _header refuses every other mode
            raise _unsupported_mode(path, mode)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return DecodedImage(apply_orientation(pixels, info.orientation), info, icc, notes)


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read ``path`` upright as a :class:`LoadedImage` for restoration (see the module docstring for every case).

    Raises :class:`ImageReadError` for missing, unreadable, non-image, truncated, oversized (more than
    ``max_pixels``; None: no limit) or unsupported files.
    """
    d = decode_image(path, max_pixels)
    f = d.pixels.astype(np.float32) / np.float32(65535.0 if d.bit_depth == 16 else 255.0)
    c = f.shape[2]
    rgb = np.repeat(f[..., :1], 3, axis=2) if c <= 2 else np.ascontiguousarray(f[..., :3])
    alpha = np.ascontiguousarray(f[..., c - 1]) if c in (2, 4) else None
    info = d.info
    return LoadedImage(rgb, alpha, c <= 2, d.bit_depth, info.format, info.mode, info.orientation, d.icc_profile,
                       d.notes)


# ---------------------------------------------------------------------------------------------------------- writing
def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma (Pillow's RGB → L) of H×W×3 floats."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _quantize(x: np.ndarray, bits: int) -> np.ndarray:
    top = 65535 if bits == 16 else 255
    return np.rint(np.clip(x, 0.0, 1.0) * top).astype(np.uint16 if bits == 16 else np.uint8)


def encode_png16(array: np.ndarray, icc_profile: bytes | None = None, level: int = 6) -> bytes:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA from 1–4 channels) of a uint16 H×W[×C] array."""
    arr = np.asarray(array)
    if arr.dtype != np.uint16:
        raise TypeError(f"expected uint16, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = arr.astype(">u2").view(np.uint8).reshape(h, w * c * 2)
    bpp = 2 * c
    filtered = rows.copy()  # "Sub" filter: each byte minus the byte one pixel to the left (mod 256)
    filtered[:, bpp:] = rows[:, bpp:] - rows[:, :-bpp]
    raw = np.concatenate([np.ones((h, 1), np.uint8), filtered], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    out = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))]
    if icc_profile:
        out.append(chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    out += [chunk(b"IDAT", zlib.compress(raw.tobytes(), level)), chunk(b"IEND", b"")]
    return b"".join(out)


def output_format(path: str | os.PathLike) -> str:
    """Pillow's format name for ``path``'s extension (ValueError if it has none Pillow can write)."""
    ext = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot write images with extension {ext or '(none)'!r}")
    return fmt


def encode_image(rgb: np.ndarray, like: LoadedImage, fmt: str, jpeg_quality: int = 95) -> tuple[bytes, list[str]]:
    """Encode restored H×W×3 floats in ``like``'s layout as format ``fmt``; returns (bytes, notes)."""
    notes: list[str] = []
    channels = [luma(rgb)] if like.grayscale else [rgb[..., i] for i in range(3)]
    if like.alpha is not None:
        if fmt in ("JPEG", "BMP", "PPM") or (fmt == "GIF"):
            notes.append(f"alpha dropped ({fmt} cannot store it)")
        else:
            channels.append(like.alpha)
    planes = np.stack(channels, axis=-1)
    if like.bit_depth == 16 and fmt == "PNG":
        return encode_png16(_quantize(planes, 16), like.icc_profile), notes
    if like.bit_depth == 16 and fmt == "TIFF":
        import tifffile

        arr = _quantize(planes, 16)
        buf = io.BytesIO()
        extra = {"extrasamples": ["unassalpha"]} if like.alpha is not None else {}
        photometric = "minisblack" if like.grayscale else "rgb"
        if like.grayscale and like.alpha is None:
            arr = arr[..., 0]
        tifffile.imwrite(buf, arr, photometric=photometric, planarconfig="contig", compression="zlib",
                         iccprofile=like.icc_profile, **extra)
        return buf.getvalue(), notes
    if like.bit_depth == 16:
        notes.append(f"written with 8 bits ({fmt} has no 16-bit mode here)")
    arr = _quantize(planes, 8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    img = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode=mode)
    kwargs: dict = {}
    if like.icc_profile and fmt in ("PNG", "JPEG", "TIFF", "WEBP"):
        kwargs["icc_profile"] = like.icc_profile
    if fmt == "JPEG":
        kwargs.update(quality=jpeg_quality, subsampling=0)
    elif fmt == "WEBP":
        kwargs.update(quality=jpeg_quality)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue(), notes


def write_image(path: str | os.PathLike, rgb: np.ndarray, like: LoadedImage, *, overwrite: bool = True,
                jpeg_quality: int = 95) -> list[str]:
    """Write restored float RGB ``rgb`` (H×W×3) to ``path`` in ``like``'s layout, atomically; returns notes.

    The format follows ``path``'s extension. With ``overwrite=False`` an existing file is never replaced
    (:class:`FileExistsError`). A result holding NaN or infinity (damaged weights, an overflow) is refused with a
    :class:`ValueError`: a failed image, never written as black or noise and counted "restored".
    """
    if rgb.shape[:2] != (like.height, like.width):
        raise ValueError(f"restored image is {rgb.shape[1]}×{rgb.shape[0]}, the input {like.width}×{like.height}")
    finite = np.isfinite(rgb)
    if not finite.all():
        raise ValueError(f"the restored image holds {int(finite.size - finite.sum()):,} NaN/infinite value(s) "
                         "(damaged weights or a numerical overflow); nothing was written")
    data, notes = encode_image(rgb, like, output_format(path), jpeg_quality)
    atomic_write_bytes(path, data, overwrite=overwrite)
    return notes
