"""Image files in and out of restoration: any common format, mode and bit depth, written atomically.

Reading (:func:`read_image`) gives the three colour channels the models take — float32 H×W×3 in [0, 1] — plus
what is needed to write the result back in the input's form (:class:`LoadedImage`):

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
EXIF orientation    rotated / flipped upright (``ImageOps.exif_transpose``)     upright, without an orientation tag
multi-frame         the first frame only (noted)                                a single image
==================  ==========================================================  ==================================

Writing (:func:`write_image`) keeps the format of the output name's extension, the channel layout and bit depth
above, and the ICC colour profile (other EXIF metadata is not copied). Formats that cannot hold what the input
had fall back with a note: JPEG has no alpha (dropped) and no 16 bits (8 bits written). Every file is written
atomically (:mod:`src.utils.atomic`): a killed run leaves no truncated image.

Errors while reading are :class:`ImageReadError` with a one-line reason (missing, not an image, truncated, too
large, unsupported mode).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from src.utils.atomic import atomic_write_bytes

# what a folder is scanned for (files given by name are tried whatever their extension)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm",
                    ".tga")
DEFAULT_MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)  # Pillow's decompression-bomb error threshold
ORIENTATION_TAG = 0x0112
_RGB_CONVERTIBLE = {"RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_GRAY16_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageReadError(ValueError):
    """A file that cannot be restored: ``path`` and a one-line ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")


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
        raise ImageReadError(path, "OpenCV could not decode this 16-bit PNG")
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
        raise ImageReadError(path, f"unsupported 16-bit TIFF layout {arr.shape} {arr.dtype}")
    return arr


def _split_uint16(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """uint16 H×W[×C] → (float RGB, float alpha or None, grayscale)."""
    f = arr.astype(np.float32) / 65535.0
    if f.ndim == 2:
        return np.repeat(f[..., None], 3, axis=2), None, True
    c = f.shape[2]
    if c == 1:
        return np.repeat(f, 3, axis=2), None, True
    if c == 2:
        return np.repeat(f[..., :1], 3, axis=2), np.ascontiguousarray(f[..., 1]), True
    return np.ascontiguousarray(f[..., :3]), (np.ascontiguousarray(f[..., 3]) if c == 4 else None), False


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read ``path`` upright as a :class:`LoadedImage` (see the module docstring for every case).

    Raises :class:`ImageReadError` for missing, unreadable, non-image, truncated, oversized (more than
    ``max_pixels``; None: no limit) or unsupported files.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit below, per call
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image (or a format Pillow cannot read)") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot be read: {e.strerror or e}") from None
    except Exception as e:  # malformed headers surface as ValueError, SyntaxError, struct.error, …
        raise ImageReadError(path, f"not a readable image: {type(e).__name__}: {e}") from None
    with im:
        width, height = im.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageReadError(path, f"{width}×{height} = {width * height:,} pixels is more than the limit of "
                                       f"{max_pixels:,} (raise it with --max-pixels)")
        notes = []
        if getattr(im, "n_frames", 1) > 1:
            notes.append(f"{im.n_frames} frames: only the first is restored")
        fmt = im.format
        icc = im.info.get("icc_profile") or None
        try:
            orientation = int(im.getexif().get(ORIENTATION_TAG, 1) or 1)
        except Exception:  # malformed EXIF: keep the pixels as stored
            orientation = 1
        if orientation not in range(1, 9):
            orientation = 1
        try:
            im.load()
        except Exception as e:  # truncated data: OSError; corrupt streams: ValueError, SyntaxError, zlib.error, …
            raise ImageReadError(path, f"cannot be decoded (truncated or corrupt): {e}") from None

        png = _png_header(path) if fmt == "PNG" else None
        bits = im.tag_v2.get(258) if fmt == "TIFF" and hasattr(im, "tag_v2") else None
        bits = tuple(bits) if isinstance(bits, (tuple, list)) else ((bits,) if bits else ())
        wide = None
        try:
            if png is not None and png[0] == 16 and png[1] in (2, 4, 6):
                wide = _read_png16(path, png[1])
            elif fmt == "TIFF" and 16 in bits and im.mode not in _GRAY16_MODES:
                wide = _read_tiff16(path)
        except ImportError as e:
            notes.append(f"16-bit colour read at 8 bits ({e.name} is not installed)")
        if wide is not None:
            rgb, alpha, gray = _split_uint16(apply_orientation(wide, orientation))
            return LoadedImage(rgb, alpha, gray, 16, fmt, im.mode, orientation, icc, notes)
        if im.mode in _GRAY16_MODES:
            arr = np.asarray(im)
            if arr.dtype not in (np.uint16, np.int32) or (arr.size and (arr.min() < 0 or arr.max() > 65535)):
                raise ImageReadError(path, f"unsupported integer image (mode {im.mode}, values outside 0…65535)")
            rgb, alpha, gray = _split_uint16(apply_orientation(arr.astype(np.uint16), orientation))
            return LoadedImage(rgb, alpha, gray, 16, fmt, im.mode, orientation, icc, notes)

        mode = im.mode
        upright = ImageOps.exif_transpose(im) if orientation != 1 else im
        if mode in ("1", "L"):
            gray, alpha, grayscale = upright.convert("L"), None, True
            rgb = np.repeat(np.asarray(gray)[..., None], 3, axis=2)
        elif mode in ("LA", "La"):
            la = np.asarray(upright.convert("LA"))
            rgb, alpha, grayscale = np.repeat(la[..., :1], 3, axis=2), la[..., 1], True
        elif mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in im.info
            conv = np.asarray(upright.convert("RGBA" if has_alpha else "RGB"))
            rgb, alpha, grayscale = conv[..., :3], (conv[..., 3] if has_alpha else None), False
            notes.append("palette image: written back as " + ("RGBA" if has_alpha else "RGB"))
        elif mode in ("RGBA", "RGBa"):
            conv = np.asarray(upright.convert("RGBA"))
            rgb, alpha, grayscale = conv[..., :3], conv[..., 3], False
        elif mode in _RGB_CONVERTIBLE:
            rgb, alpha, grayscale = np.asarray(upright.convert("RGB")), None, False
            if mode not in ("RGB", "RGBX"):
                notes.append(f"{mode} converted to RGB")
        else:
            raise ImageReadError(path, f"unsupported image mode {mode!r} (e.g. 32-bit float); convert it to 8- or "
                                       "16-bit RGB/gray first")
        rgb = np.ascontiguousarray(rgb, dtype=np.float32) / 255.0
        alpha = None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32) / 255.0
        return LoadedImage(rgb, alpha, grayscale, 8, fmt, mode, orientation, icc, notes)


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
    (:class:`FileExistsError`).
    """
    if rgb.shape[:2] != (like.height, like.width):
        raise ValueError(f"restored image is {rgb.shape[1]}×{rgb.shape[0]}, the input {like.width}×{like.height}")
    data, notes = encode_image(rgb, like, output_format(path), jpeg_quality)
    atomic_write_bytes(path, data, overwrite=overwrite)
    return notes
