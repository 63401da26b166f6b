"""Image grids: rows of LQ | output(s) | GT, for TensorBoard and for PNG files beside the tables."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image


def comparison_grid(*columns: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """One row per sample, one column per tensor (each B×3×H×W in [0, 1]); returns a 3×H'×W' image."""
    b = columns[0].shape[0]
    tiles = torch.stack([c.detach().float().cpu().clamp(0, 1) for c in columns], dim=1).flatten(0, 1)
    return make_grid(tiles, nrow=len(columns), padding=pad, pad_value=1.0) if b else tiles


def save_comparison_grid(path: str | Path, *columns: torch.Tensor) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(comparison_grid(*columns), path)
    return path
