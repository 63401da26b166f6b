"""Contrast-limited adaptive histogram equalisation: Zuiderveld, "Contrast limited adaptive histogram
equalization", Graphics Gems IV, 1994; here OpenCV's ``createCLAHE`` on the L channel of CIELAB, so hues stay.
"""

from __future__ import annotations

import cv2
import numpy as np


def clahe(img: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """CLAHE of the lightness of an H×W×3 float image in [0, 1] (``tiles``×``tiles`` grid, ``clip_limit``)."""
    u8 = np.round(np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255).astype(np.uint8)
    lab = cv2.cvtColor(u8, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tiles, tiles)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(np.float32) / np.float32(255.0)
