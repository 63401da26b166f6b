"""BM3D denoising: Dabov, Foi, Katkovnik, Egiazarian, "Image denoising by sparse 3-D transform-domain
collaborative filtering", IEEE TIP 16(8), 2007 (colour: CBM3D, the luminance-chrominance variant of the same
authors, ICIP 2007). Runs the reference implementation of the ``bm3d`` package (optional extra ``[baselines]``).
"""

from __future__ import annotations

import numpy as np

INSTALL_HINT = "pip install -e .[baselines]"


def bm3d_available() -> bool:
    """Whether the ``bm3d`` package can be imported."""
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def bm3d_denoise(img: np.ndarray, sigma: float) -> np.ndarray:
    """CBM3D of an H×W×3 float image in [0, 1] with white Gaussian noise of std ``sigma`` (0-255 scale)."""
    try:
        import bm3d
    except ImportError as e:
        raise ImportError(f"BM3D needs the bm3d package: {INSTALL_HINT}") from e
    img = np.asarray(img, dtype=np.float32)
    out = bm3d.bm3d_rgb(img, sigma_psd=float(sigma) / 255.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
