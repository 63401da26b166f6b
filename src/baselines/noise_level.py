"""Noise level estimate for the denoising baselines when σ is not known: the robust median estimator of the
finest wavelet sub-band, σ = median(|HH|) / 0.6745 (Donoho & Johnstone, "Ideal spatial adaptation by wavelet
shrinkage", Biometrika 81(3), 1994), as implemented by ``skimage.restoration.estimate_sigma``.
"""

from __future__ import annotations

import numpy as np


def estimate_noise_sigma(img: np.ndarray) -> float:
    """Std of white Gaussian noise in an H×W×3 float image in [0, 1], on the 0-255 scale (mean over channels)."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(np.asarray(img, dtype=np.float32), channel_axis=-1, average_sigmas=True)) * 255.0
