"""Median filter: Tukey, "Exploratory data analysis", 1977 (the running median); removes thin, sparse bright
structures (rain streaks, snow flakes) narrower than half the window while keeping step edges.
"""

from __future__ import annotations

import cv2
import numpy as np


def median_filter(img: np.ndarray, size: int = 5) -> np.ndarray:
    """Per-channel ``size``×``size`` median of an H×W×3 float image in [0, 1] (``size`` odd)."""
    if size < 3 or size % 2 == 0:
        raise ValueError(f"median filter size must be odd and >= 3, got {size}")
    u8 = np.round(np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255).astype(np.uint8)
    return cv2.medianBlur(u8, size).astype(np.float32) / np.float32(255.0)
