"""Guided image filter: He, Sun, Tang, "Guided image filtering", ECCV 2010 / IEEE TPAMI 35(6), 2013 (Alg. 1):
``q = mean(a)·I + mean(b)`` with ``a = cov(I, p) / (var(I) + ε)``, ``b = mean(p) − a·mean(I)`` over
(2r+1)² boxes, for a grayscale guide ``I``. Used to refine the dark channel prior's transmission and, guided by
the image itself, as an edge-preserving smoother (rain, snow, JPEG blocks).
"""

from __future__ import annotations

import cv2
import numpy as np


def _box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)² window (reflected borders)."""
    return cv2.blur(x, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Filter ``src`` (H×W or H×W×C) guided by the grayscale ``guide`` (H×W), box radius ``radius``, ε ``eps``."""
    guide = np.asarray(guide, dtype=np.float32)
    src = np.asarray(src, dtype=np.float32)
    if guide.ndim != 2 or guide.shape != src.shape[:2]:
        raise ValueError(f"guided_filter: guide must be H×W matching src {src.shape}, got {guide.shape}")
    g = guide if src.ndim == 2 else guide[..., None]
    mean_i, mean_p = _box(guide, radius), _box(src, radius)
    mean_i = mean_i if src.ndim == 2 else mean_i[..., None]
    cov_ip = _box(g * src, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - _box(guide, radius) ** 2
    var_i = var_i if src.ndim == 2 else var_i[..., None]
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    return (_box(a, radius) * g + _box(b, radius)).astype(np.float32)


def gray(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an H×W×3 image."""
    img = np.asarray(img, dtype=np.float32)
    return img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def self_guided(img: np.ndarray, radius: int = 2, eps: float = 0.01) -> np.ndarray:
    """Edge-preserving smoothing of an H×W×3 float image in [0, 1], guided by its own luma."""
    return np.clip(guided_filter(gray(img), img, radius, eps), 0.0, 1.0)
