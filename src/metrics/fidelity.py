"""Full-reference fidelity metrics (PSNR / SSIM) following the BasicSR convention.

The image-restoration literature (and the DiffUIR paper) reports PSNR/SSIM the way
BasicSR's ``calculate_psnr`` / ``calculate_ssim`` compute them, typically with
``test_y_channel=True`` and ``crop_border=0``.  This module re-implements that
convention from its definition:

1. **Quantisation.**  Network outputs (float, nominally in ``[0, 1]``) are clamped to
   ``[0, 1]``, scaled by 255, rounded half-to-even and cast to ``uint8`` (as BasicSR's
   ``tensor2img`` does).  Metrics are always computed on these 8-bit images.
2. **Y channel.**  BasicSR's ``to_y_channel`` divides the uint8 image by 255, applies
   BT.601 limited-range luma ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B)/255`` (its
   ``bgr2ycbcr(..., y_only=True)`` for float input in ``[0, 1]``) and multiplies the result
   back by 255.  Net effect on the 0-255 scale::

       Y = 16 + (65.481 * R + 128.553 * G + 24.966 * B) / 255,   R, G, B in [0, 255]

   The result is **not rounded** (white -> 235, black -> 16).  BasicSR does this in
   float32; here it is done in float64 (difference < 1e-4 grey levels, i.e. far below
   the 1e-2 dB / 1e-4 SSIM precision that papers report).
3. **Crop.**  ``crop_border`` pixels are removed from every side (before or after the
   colour conversion is equivalent since it is per-pixel).
4. **PSNR** on float64 values on the 0-255 scale: ``10 * log10(255**2 / mean((a - b)**2))``;
   ``inf`` for identical images.
5. **SSIM** (Wang et al. 2004): 11x11 Gaussian window with sigma 1.5 (normalised to sum 1),
   ``C1 = (0.01 * 255)**2``, ``C2 = (0.03 * 255)**2``, local statistics taken only where the
   window lies fully inside the image ("valid" filtering: BasicSR filters with OpenCV and
   discards 5 pixels on every side), population (biased) variances, and the mean of the
   SSIM map.  In RGB mode (``y_channel=False``) the per-channel SSIMs are averaged.

Layout conventions: numpy arrays are ``HxW``, ``HxWxC`` (RGB); torch tensors are
``CxHxW`` or ``BxCxHxW`` (RGB).  Float inputs are interpreted as ``[0, 1]`` images (values
outside are clamped -- a float image already on the 0-255 scale must be converted to
``uint8`` by the caller).  Integer ``uint8`` inputs are taken as-is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "Y_COEFFS",
    "batch_psnr_ssim",
    "psnr",
    "rgb_to_y",
    "ssim",
    "to_uint8",
]

#: BT.601 limited-range luma coefficients for R, G, B values in [0, 1] (output on 0-255 scale).
Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
Y_OFFSET = 16.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_DATA_RANGE = 255.0
_C1 = (0.01 * _DATA_RANGE) ** 2
_C2 = (0.03 * _DATA_RANGE) ** 2


def _is_tensor(x: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency of the suite
        return False
    return isinstance(x, torch.Tensor)


def _tensor_to_hwc_numpy(t: Any) -> np.ndarray:
    """CxHxW -> HxWxC, BxCxHxW -> BxHxWxC (B == 1 is squeezed), HxW -> HxW (numpy)."""
    import torch

    t = t.detach()
    if t.is_floating_point() and t.dtype != torch.float64:
        t = t.float()  # BasicSR's tensor2img works in float32
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    elif t.dim() == 3:
        if t.shape[0] not in (1, 3) and t.shape[-1] in (1, 3):
            raise ValueError(
                f"torch tensors must be CxHxW / BxCxHxW, got shape {tuple(t.shape)} (looks HxWxC)"
            )
        t = t.permute(1, 2, 0)
    elif t.dim() != 2:
        raise ValueError(f"unsupported tensor shape {tuple(t.shape)}")
    return t.cpu().contiguous().numpy()


def to_uint8(img: Any) -> np.ndarray:
    """Quantise an image to ``uint8`` HxWxC (RGB) numpy, as BasicSR's ``tensor2img``.

    Accepts a float numpy array ``HxW`` / ``HxWxC`` or a torch tensor ``CxHxW`` /
    ``BxCxHxW`` with values in ``[0, 1]``: values are clamped to ``[0, 1]``, multiplied by
    255 and rounded (half to even) -- ``(x.clip(0, 1) * 255).round()``.  A ``BxCxHxW``
    tensor with ``B == 1`` gives ``HxWxC``; with ``B > 1`` it gives ``BxHxWxC``.  ``uint8``
    inputs (numpy ``HxWxC`` or torch ``CxHxW``) are only re-laid-out.  NaNs raise
    ``ValueError`` (they have no meaningful 8-bit value).
    """
    arr = _tensor_to_hwc_numpy(img) if _is_tensor(img) else np.asarray(img)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"unsupported image dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"integer images must be uint8, got {arr.dtype}; float images must be in [0, 1]")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    if np.isnan(arr).any():
        raise ValueError("image contains NaN values")
    return (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def rgb_to_y(img: Any) -> np.ndarray:
    """BT.601 limited-range luma of an RGB image on the 0-255 scale (float64, not rounded).

    ``img`` is ``HxWx3`` RGB, either ``uint8`` or float already on the 0-255 scale.
    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` -- exactly BasicSR's
    ``to_y_channel`` (``bgr2ycbcr(img / 255, y_only=True) * 255``; BasicSR stores BGR and
    uses the reversed coefficient order, this function takes RGB).  Examples: white -> 235,
    black -> 16, pure red (255, 0, 0) -> 81.481.  Returns an ``HxW`` float64 array.
    """
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 RGB array, got shape {arr.shape}")
    return (arr.astype(np.float64) / 255.0) @ Y_COEFFS + Y_OFFSET


def _prepare_pair(img: Any, ref: Any, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Quantise, check shapes, crop and (optionally) take Y; returns float64 HxWxC arrays."""
    shape_in = (tuple(img.shape), tuple(ref.shape))
    a = to_uint8(img)
    b = to_uint8(ref)
    if a.shape != b.shape:
        raise ValueError(
            f"image shapes differ: img {shape_in[0]} vs ref {shape_in[1]} (as HxWxC: {a.shape} vs {b.shape})"
        )
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected a single image (HxW, HxWxC, CxHxW or 1xCxHxW), got {shape_in[0]}")
    if a.shape[-1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got image of shape {a.shape} (HxWxC)")
    crop_border = int(crop_border)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        h, w = a.shape[:2]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border={crop_border} leaves nothing of an {h}x{w} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel and a.shape[-1] == 3:
        return rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]
    return a.astype(np.float64), b.astype(np.float64)


def psnr(img: Any, ref: Any, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB (BasicSR convention; see the module docstring).

    ``img`` / ``ref``: ``uint8`` RGB ``HxWx3`` numpy arrays, or float ``[0, 1]`` numpy
    arrays (``HxWxC``) / torch tensors (``CxHxW`` or ``1xCxHxW``), which are quantised with
    :func:`to_uint8` first.  ``y_channel=True`` evaluates on BT.601 Y (not rounded), else on
    all RGB channels.  ``crop_border`` pixels are dropped on each side.  Identical images
    give ``float('inf')``.
    """
    a, b = _prepare_pair(img, ref, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(_DATA_RANGE**2 / mse))


def _gaussian_kernel_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


_KERNEL = _gaussian_kernel_1d()


def _filter_valid(stack: np.ndarray, kernel: np.ndarray = _KERNEL) -> np.ndarray:
    """Separable 'valid' correlation of ``(N, H, W)`` maps with ``outer(kernel, kernel)``.

    Output ``(N, H - k + 1, W - k + 1)``: only positions whose window is fully inside.
    """
    k = kernel.shape[0]
    rows = np.lib.stride_tricks.sliding_window_view(stack, k, axis=1) @ kernel  # (N, H-k+1, W)
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=2) @ kernel  # (N, H-k+1, W-k+1)


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM map of two float64 HxW images on the 0-255 scale (valid region)."""
    h, w = a.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    mu_a, mu_b, e_aa, e_bb, e_ab = _filter_valid(np.stack([a, b, a * a, b * b, a * b]))
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a, var_b, cov = e_aa - mu_aa, e_bb - mu_bb, e_ab - mu_ab
    num = (2.0 * mu_ab + _C1) * (2.0 * cov + _C2)
    den = (mu_aa + mu_bb + _C1) * (var_a + var_b + _C2)
    return float(np.mean(num / den))


def ssim(img: Any, ref: Any, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM (Wang et al.; BasicSR convention, see the module docstring).

    Same input conventions as :func:`psnr`.  11x11 Gaussian window (sigma 1.5),
    ``C1 = (0.01*255)**2``, ``C2 = (0.03*255)**2``, statistics on windows fully inside the
    (cropped) image, mean of the SSIM map; RGB mode averages the per-channel SSIMs.
    Identical images give exactly 1.0.
    """
    a, b = _prepare_pair(img, ref, crop_border, y_channel)
    return float(np.mean([_ssim_2d(a[..., c], b[..., c]) for c in range(a.shape[-1])]))


def batch_psnr_ssim(
    pred: Any, target: Any, crop_border: int = 0, y_channel: bool = True
) -> tuple[list[float], list[float]]:
    """Per-image PSNR and SSIM for ``BxCxHxW`` torch tensors (float, ``[0, 1]``).

    Each image is quantised to uint8 (:func:`to_uint8`) and scored with :func:`psnr` /
    :func:`ssim`.  Returns ``(psnrs, ssims)``, two lists of ``B`` Python floats.  Intended
    for Lightning validation steps (tensors may live on any device; they are moved to CPU).
    """
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"batch shapes differ: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if pred.dim() != 4:
        raise ValueError(f"expected BxCxHxW tensors, got shape {tuple(pred.shape)}")
    psnrs: list[float] = []
    ssims: list[float] = []
    for i in range(pred.shape[0]):
        p = to_uint8(pred[i])
        t = to_uint8(target[i])
        psnrs.append(psnr(p, t, crop_border=crop_border, y_channel=y_channel))
        ssims.append(ssim(p, t, crop_border=crop_border, y_channel=y_channel))
    return psnrs, ssims
