"""The datasets' image policy on top of the suite's one reader (:mod:`src.utils.images`).

Decoding, validation and their error messages are :mod:`src.utils.images`' (the reader ``src.restore`` uses too), so a
file refused here for being missing, unreadable, truncated, oversized or of an unsupported mode is refused there
with the same :class:`ImageProblem` (an alias of :class:`~src.utils.images.ImageReadError`) and message. What this
module adds is the datasets' policy:

* accepted as is: 8-bit RGB (PIL mode ``"RGB"``; JPEGs decode to it), upright (EXIF orientation applied, as
  OpenCV's ``imread`` in the official training code does);
* grayscale (``L``, ``1``, ``I;16``, ...), grayscale + alpha, RGBA / RGBX, palette, CMYK / YCbCr / LAB and any 16-bit
  image are errors of kind ``mode``, unless ``convert=True`` (a documented opt-in): grayscale is replicated to three
  channels, the alpha channel is dropped (not composited), palettes are expanded, 16-bit data are scaled to 8 bits
  (``round(v / 257)``, from the full 16-bit values) and other colour spaces are converted with Pillow.

:func:`probe_image` checks the header only (fast enough for a whole dataset); :func:`read_image` decodes the pixels,
the only way to find a truncated file. Images come back as ``uint8`` H×W×3 arrays (cheap to crop / flip /
equalise); :func:`to_float` maps them to the suite's ``float32`` [0, 1] convention.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from src.utils.images import (  # noqa: F401  (re-exported: the datasets' names for the one reader's types)
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageInfo,
    ImageReadError,
    decode_image,
    is_image_file,
)
from src.utils.images import probe_image as _probe

ImageProblem = ImageReadError
EXPECTED_MODE = "an 8-bit RGB image"
_GRAY_MODES = {"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "RGBX", "LA", "La", "PA"}


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


def _policy(convert: bool):
    def check(info: ImageInfo) -> None:
        problem = None if convert else _mode_problem(info.mode, info.bits)
        if problem:
            raise ImageProblem(info.path, problem, EXPECTED_MODE + " (or convert=True to convert it)", "mode")
    return check


def probe_image(path: str | os.PathLike, convert: bool = False) -> ImageInfo:
    """Header-only check of one image; raises :class:`ImageProblem` (missing, unreadable, oversized, and without
    ``convert`` a mode or bit depth other than 8-bit RGB)."""
    info = _probe(path)
    _policy(convert)(info)
    return info


def read_image(path: str | os.PathLike, convert: bool = False) -> np.ndarray:
    """Decode an image fully as upright ``uint8`` H×W×3 RGB; raises :class:`ImageProblem` naming the file on any
    problem (see the module docstring; other modes and bit depths are converted with ``convert=True``).

    The file is decoded before the policy is applied, so a file the reader refuses (truncated, ...) gets the
    reader's message whatever its mode."""
    decoded = decode_image(path)
    _policy(convert)(decoded.info)
    px = decoded.pixels
    if px.dtype == np.uint16:
        px = ((px.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257): no ties for integers
    c = px.shape[2]
    if c <= 2:
        return np.repeat(px[..., :1], 3, axis=2)
    return px if c == 3 else np.ascontiguousarray(px[..., :3])


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
