"""Padding images to a network's size multiple (bottom/right), so any input size can be restored and cropped back."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two dims (of a C×H×W or B×C×H×W tensor) right/bottom to a multiple of ``multiple``.

    Reflect padding where the image is large enough, replicate otherwise (tiny images). Returns the padded tensor
    and the original (H, W), to crop back with ``y[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    multiple = max(1, int(multiple))
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    squeeze = x.ndim == 3
    y = F.pad(x[None] if squeeze else x, (0, pw, 0, ph), mode=mode)
    return (y[0] if squeeze else y), (h, w)
