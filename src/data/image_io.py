"""Validated image reading: every problem is an :class:`ImageProblem` naming the file, what is wrong and what was
expected.

Two levels of checking:

* :func:`probe_image` reads the **header only** (PIL opens files lazily, plus the PNG ``IHDR`` / TIFF
  ``BitsPerSample`` fields for the bit depth), so it is fast enough to run over a whole dataset when a manifest is
  built: missing or unreadable files, wrong colour modes, 16-bit data and image sizes are all known from it.
* :func:`read_image` decodes the pixels (``Image.load()``), which is the only way to catch a **truncated** file.

What is accepted: 8-bit RGB (PIL mode ``"RGB"``; JPEGs decode to it). Grayscale (``L``, ``1``, ``I``, ``I;16``,
``F``), grayscale + alpha (``LA``), RGBA / RGBX, palette (``P``), CMYK / YCbCr / LAB and any 16-bit image are errors,
unless ``convert=True`` is passed (a documented opt-in): grayscale is replicated to three channels, the alpha channel
is dropped (not composited), palettes are expanded, 16-bit data are scaled to 8 bits (``round(v / 257)``, on what
PIL decodes: PIL itself reduces 16-bit RGB PNGs to 8 bits) and other colour spaces are converted with PIL.

Images come back as ``uint8`` H×W×3 arrays (cheap to crop / flip / equalise); :func:`to_float` maps them to the
suite's ``float32`` [0, 1] convention.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
EXPECTED_MODE = "an 8-bit RGB image"
_GRAY_MODES = {"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "RGBX", "LA", "La", "PA"}


class ImageProblem(ValueError):
    """One bad image: ``path``, ``problem`` (what is wrong) and ``expected`` (what would be right)."""

    def __init__(self, path: str | os.PathLike, problem: str, expected: str = EXPECTED_MODE, kind: str = "invalid"):
        self.path, self.problem, self.expected, self.kind = str(path), problem, expected, kind
        super().__init__(f"{self.path}: {problem} (expected {expected})")


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: size (width, height), PIL mode, format and bits per channel."""

    path: str
    width: int
    height: int
    mode: str
    format: str | None
    bits: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a visible file whose extension is one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _bits_per_channel(im: Image.Image, path: Path) -> int:
    """Bits per channel from the header (PNG IHDR, TIFF BitsPerSample, PIL's 16/32-bit modes); 8 otherwise."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return 16
    if im.mode in ("I", "F"):
        return 32
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        if len(head) >= 26 and head[12:16] == b"IHDR":
            return int(struct.unpack(">B", head[24:25])[0])
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)  # BitsPerSample
        if bits:
            return int(max(bits) if isinstance(bits, tuple) else bits)
    return 8


def _mode_problem(mode: str, bits: int) -> str | None:
    """Why an image of ``mode`` with ``bits`` per channel is not 8-bit RGB (None when it is)."""
    if bits > 8:
        kind = "grayscale" if mode in _GRAY_MODES else "colour"
        return f"{bits}-bit {kind} image (mode {mode})"
    if mode == "RGB":
        return None
    if mode in _GRAY_MODES:
        return f"grayscale image (mode {mode})"
    if mode in _ALPHA_MODES:
        return f"image with an alpha channel (mode {mode})"
    if mode == "P":
        return "palette image (mode P)"
    return f"image in colour mode {mode}"


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageProblem(path, "file not found", "an existing image file", kind="missing")
    if not path.is_file():
        raise ImageProblem(path, "not a regular file", "an image file", kind="missing")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise ImageProblem(path, "not a readable image (PIL cannot identify it)", "a PNG/JPEG/BMP/TIFF/WebP image",
                           kind="unreadable") from None
    except OSError as e:
        raise ImageProblem(path, f"cannot be opened ({e})", "a readable image file", kind="unreadable") from None


def probe_image(path: str | os.PathLike, convert: bool = False) -> ImageInfo:
    """Header-only check of one image; raises :class:`ImageProblem` (missing, unreadable, wrong mode / bit depth).

    With ``convert=True`` a wrong mode or bit depth is accepted (it will be converted by :func:`read_image`).
    """
    path = Path(path)
    with _open(path) as im:
        try:
            bits = _bits_per_channel(im, path)
        except OSError as e:
            raise ImageProblem(path, f"cannot read the header ({e})", "a readable image file",
                               kind="unreadable") from None
        info = ImageInfo(str(path), im.width, im.height, im.mode, im.format, bits)
    if not convert:
        problem = _mode_problem(info.mode, info.bits)
        if problem:
            raise ImageProblem(path, problem, EXPECTED_MODE + " (or convert=True to convert it)", kind="mode")
    return info


def _to_rgb8(im: Image.Image, bits: int) -> np.ndarray:
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if bits <= 16 else 16843009.0  # 65535/255 and (2**32-1)/255
        arr = np.clip(np.round(arr / scale), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode == "F":
        arr = np.clip(np.round(np.asarray(im, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(im, dtype=np.uint8)[..., :3].copy()
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
        return np.asarray(im, dtype=np.uint8)[..., :3].copy()
    if im.mode in ("LA", "La"):
        return np.repeat(np.asarray(im, dtype=np.uint8)[..., :1], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike, convert: bool = False) -> np.ndarray:
    """Decode an image fully as ``uint8`` H×W×3 RGB; raises :class:`ImageProblem` naming the file on any problem.

    Checks, in order: the file exists and is an image, its mode / bit depth (see the module docstring; accepted
    and converted with ``convert=True``), and that the pixel data decode completely (a truncated file is an error).
    """
    path = Path(path)
    with _open(path) as im:
        try:
            bits = _bits_per_channel(im, path)
            if not convert:
                problem = _mode_problem(im.mode, bits)
                if problem:
                    raise ImageProblem(path, problem, EXPECTED_MODE + " (or convert=True to convert it)", kind="mode")
            im.load()
        except ImageProblem:
            raise
        except (OSError, SyntaxError, ValueError) as e:
            kind = "truncated" if "truncated" in str(e) else "unreadable"
            what = "truncated image" if kind == "truncated" else "image data cannot be decoded"
            raise ImageProblem(path, f"{what} ({e})", "a complete, decodable image file", kind=kind) from None
        arr = np.asarray(im, dtype=np.uint8) if im.mode == "RGB" else _to_rgb8(im, bits)
    if arr.ndim != 3 or arr.shape[2] != 3:  # defensive: the conversions above always give H×W×3
        raise ImageProblem(path, f"decoded to an array of shape {arr.shape}", "H×W×3")
    return arr


def to_float(img: np.ndarray) -> np.ndarray:
    """``uint8`` H×W×3 → ``float32`` H×W×3 in [0, 1]."""
    return img.astype(np.float32) / np.float32(255.0)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """``float`` [0, 1] → ``uint8`` (``round(255 · clip(x, 0, 1))``)."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(img: np.ndarray, path: str | os.PathLike) -> None:
    """Write a ``uint8`` or float [0, 1] H×W×3 image as an 8-bit RGB PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = img if img.dtype == np.uint8 else to_uint8(img)
    Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG")
