"""Global gamma correction to a target mean: ``J = I^γ`` with γ chosen so that the mean of ``J`` is 0.45, the
classical exposure-correction baseline of low-light enhancement papers (e.g. the "gamma" row of Guo, Li, Ling,
"LIME: low-light image enhancement via illumination map estimation", IEEE TIP 26(2), 2017).
"""

from __future__ import annotations

import numpy as np

TARGET_MEAN = 0.45


def gamma_for_mean(img: np.ndarray, target: float = TARGET_MEAN, iters: int = 60) -> float:
    """The γ with mean(``img``^γ) = ``target`` (bisection on log γ; the mean falls monotonically in γ)."""
    x = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    lo, hi = np.log(1e-3), np.log(1e3)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if np.power(x, np.exp(mid)).mean() > target:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def gamma_to_mean(img: np.ndarray, target: float = TARGET_MEAN) -> np.ndarray:
    """``img``^γ (one γ for all channels) with mean ``target``; H×W×3 float in [0, 1]."""
    x = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    return np.power(x, np.float32(gamma_for_mean(x, target))).astype(np.float32)
