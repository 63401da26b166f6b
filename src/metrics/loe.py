"""Lightness order error (LOE), the naturalness measure DiffUIR reports for low-light enhancement (Table 5).

Definition (Wang et al., "Naturalness preserved enhancement algorithm for non-uniform illumination images",
TIP 2013 — the NPE paper, DiffUIR's reference [56]):

    L(x)  = max(R(x), G(x), B(x))                                  lightness of a pixel, 0–255
    RD(x) = Σ_y  U(L(x), L(y)) ⊕ U(Le(x), Le(y)),   U(a, b) = 1 if a ≥ b else 0
    LOE   = (1 / m) Σ_x RD(x)

``L`` is the lightness of the reference image (the *input* of the enhancement, as in the NPE paper and in
DiffUIR's no-reference Table 5), ``Le`` that of the enhanced image, and ⊕ is exclusive-or: RD(x) counts the
pixels whose lightness order relative to x the enhancement flipped. Lower is better; 0 means every order
relation is preserved (any strictly increasing tone curve applied to the lightness gives 0).

The variant implemented here (the one of the widely used MATLAB evaluation code):

* both images are quantised to 8 bits first (:func:`src.metrics.fidelity.to_uint8`), so L is an integer 0–255;
* the pairwise comparison runs on a **downsampled** lightness map: with ``step = floor(min(H, W) / 50)`` (at
  least 1) the pixels at 1-based rows/columns ``step, 2·step, …, floor(H/step)·step`` (and likewise for columns)
  are kept — point sampling, no filtering, so the smaller side has about 50 samples;
* RD is averaged over all kept pixels (the pair sum is symmetric, so comparing ``L(y) ≥ L(x)`` instead of
  ``L(x) ≥ L(y)`` gives the same mean).

Not applied: some public versions of the code first replace L by a local maximum over a small window; this
module does not (the NPE paper's definition has no such step). Values therefore range from 0 to about
``m − 1`` with ``m`` ≈ 50 × 50·(longer side / shorter side) sampled pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from src.metrics.fidelity import to_uint8

__all__ = ["BLOCK", "lightness", "loe", "loe_sample_grid"]

#: the downsampled lightness map has about this many samples along the image's shorter side
BLOCK = 50


def lightness(img: Any) -> np.ndarray:
    """Per-pixel max over R, G, B of the 8-bit quantised image (``HxW`` float64 on the 0–255 scale).

    Accepts what :func:`~src.metrics.fidelity.to_uint8` accepts: ``uint8`` ``HxWx3`` numpy, float ``[0, 1]``
    numpy ``HxWx3``, torch ``CxHxW`` / ``1xCxHxW``. A single-channel image is its own lightness.
    """
    arr = to_uint8(img)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"expected one image, got an array of shape {arr.shape}")
    return arr.astype(np.float64)


def loe_sample_grid(height: int, width: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """0-based row and column indices of the downsampled lightness map (see the module docstring)."""
    step = max(1, min(height, width) // block)
    rows = np.arange(1, height // step + 1) * step - 1
    cols = np.arange(1, width // step + 1) * step - 1
    return rows, cols


def loe(reference: Any, enhanced: Any, block: int = BLOCK, chunk: int = 2048) -> float:
    """Lightness order error of ``enhanced`` with respect to ``reference`` (same size; lower is better).

    ``reference`` is the image before enhancement (the degraded input). ``chunk`` bounds memory: the
    comparison matrix is built ``chunk`` rows at a time.
    """
    lr, le = lightness(reference), lightness(enhanced)
    if lr.shape != le.shape:
        raise ValueError(f"image sizes differ: reference {lr.shape} vs enhanced {le.shape}")
    rows, cols = loe_sample_grid(*lr.shape, block=block)
    a = lr[np.ix_(rows, cols)].ravel()
    b = le[np.ix_(rows, cols)].ravel()
    errors = 0
    for start in range(0, a.size, chunk):
        ua = a[None, :] >= a[start:start + chunk, None]
        ub = b[None, :] >= b[start:start + chunk, None]
        errors += int(np.count_nonzero(ua != ub))
    return errors / a.size
