"""Auto levels: a per-channel linear stretch that maps the ``clip`` and 1 − ``clip`` quantiles of each channel to
0 and 1 — Photoshop's "Auto Levels" / "Enhance Per Channel Contrast" (clip 0.1 % by default there), the first
thing a photographer tries on a hazy or dark photo.
"""

from __future__ import annotations

import numpy as np


def auto_levels(img: np.ndarray, clip: float = 0.001) -> np.ndarray:
    """Stretch each channel of ``img`` (H×W×3 float in [0, 1]) linearly so that its ``clip`` quantile goes to 0 and
    its 1 − ``clip`` quantile to 1, clipping the rest; a flat channel (equal quantiles) is left as it is."""
    if not 0 <= clip < 0.5:
        raise ValueError(f"clip={clip}: expected a fraction in [0, 0.5)")
    x = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    lo = np.quantile(x, clip, axis=(0, 1)).astype(np.float32)
    hi = np.quantile(x, 1 - clip, axis=(0, 1)).astype(np.float32)
    span = hi - lo
    flat = span <= 1e-6
    out = (x - lo) / np.where(flat, 1.0, span)
    out = np.where(flat, x, out)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
