"""Dark channel prior dehazing: He, Sun, Tang, "Single image haze removal using dark channel prior", CVPR 2009
(TPAMI 33(12), 2011), with the transmission refined by the guided filter (He et al. 2013, Sec. 4.4) instead of
soft matting. Haze model ``I = J·t + A·(1 − t)``:

* dark channel ``dark(x) = min_{y∈Ω(x)} min_c I^c(y)`` over ``patch``² windows (Eq. 5);
* atmospheric light ``A``: of the brightest 0.1 % of the dark channel, the input pixel of highest intensity;
* transmission ``t = 1 − ω·dark(I / A)`` (Eq. 12, ω keeps a little haze for depth perception);
* recovery ``J = (I − A) / max(t, t0) + A`` (Eq. 16).
"""

from __future__ import annotations

import cv2
import numpy as np

from src.baselines.guided_filter import gray, guided_filter


def dark_channel(img: np.ndarray, patch: int = 15) -> np.ndarray:
    """``min`` over channels, then over ``patch``×``patch`` windows (an erosion), of an H×W×3 image."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(np.asarray(img, dtype=np.float32).min(axis=2), kernel, borderType=cv2.BORDER_REFLECT)


def atmospheric_light(img: np.ndarray, dark: np.ndarray, top: float = 0.001) -> np.ndarray:
    """The RGB of the brightest input pixel (by channel sum) among the ``top`` fraction of the dark channel."""
    flat = dark.reshape(-1)
    k = max(1, int(round(flat.size * top)))
    candidates = np.argpartition(flat, -k)[-k:]
    pixels = np.asarray(img, dtype=np.float32).reshape(-1, 3)[candidates]
    return pixels[pixels.sum(axis=1).argmax()]


def transmission(img: np.ndarray, airlight: np.ndarray, patch: int = 15, omega: float = 0.95,
                 radius: int = 30, eps: float = 1e-3) -> np.ndarray:
    """``1 − ω·dark(I / A)``, refined by the guided filter with the input's luma as guide (``radius=0``: raw)."""
    t = 1.0 - omega * dark_channel(np.asarray(img, dtype=np.float32) / np.maximum(airlight, 1e-3), patch)
    if radius > 0:
        t = guided_filter(gray(img), t, radius, eps)
    return np.clip(t, 0.0, 1.0).astype(np.float32)


def dehaze(img: np.ndarray, patch: int = 15, omega: float = 0.95, t0: float = 0.1, radius: int = 30,
           eps: float = 1e-3) -> np.ndarray:
    """Dehaze an H×W×3 float image in [0, 1] by the dark channel prior (see the module docstring)."""
    img = np.asarray(img, dtype=np.float32)
    a = atmospheric_light(img, dark_channel(img, patch))
    t = transmission(img, a, patch, omega, radius, eps)
    out = (img - a) / np.maximum(t, np.float32(t0))[..., None] + a
    return np.clip(out, 0.0, 1.0).astype(np.float32)
