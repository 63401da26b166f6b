"""Labelled comparison grids: one row per sample, columns LQ | restored | GT, each tile captioned with its
PSNR / SSIM (Y channel, BasicSR convention, on the 8-bit image: :func:`src.metrics.fidelity.batch_psnr_ssim`)
against the GT column. The one grid of the suite: the training test step (TensorBoard, ``test_grid.png``) and
``src.eval`` (``grid_<task>.png``, the report) both draw it with :func:`comparison_grid`.

Small images are enlarged by an integer factor (nearest neighbour, pixels stay sharp) so that tiles are at least
``min_tile`` pixels wide and their captions legible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from src.metrics.fidelity import batch_psnr_ssim

BACKGROUND, INK, MUTED = (255, 255, 255), (20, 20, 20), (110, 110, 110)


def default_labels(n: int) -> list[str]:
    """LQ | restored | GT for three columns; LQ | restored for two; LQ | output 1 … | GT for more."""
    if n == 1:
        return ["image"]
    if n == 2:
        return ["LQ", "restored"]
    if n == 3:
        return ["LQ", "restored", "GT"]
    return ["LQ", *[f"output {i}" for i in range(1, n - 1)], "GT"]


def tile_scores(columns: Sequence[torch.Tensor], gt_last: bool) -> list[list[str]]:
    """Caption of every tile (``[row][column]``): ``PSNR x dB`` / ``SSIM y`` against the last column when
    ``gt_last``; the GT tiles themselves read ``reference``. Empty captions without a GT column."""
    b, n = columns[0].shape[0], len(columns)
    captions = [["" for _ in range(n)] for _ in range(b)]
    if not gt_last or n < 2 or b == 0:
        return captions
    gt = columns[-1]
    for c in range(n - 1):
        psnrs, ssims = batch_psnr_ssim(columns[c], gt)
        for i in range(b):
            value = "inf" if math.isinf(psnrs[i]) else f"{psnrs[i]:.2f}"
            captions[i][c] = f"PSNR {value} dB\nSSIM {ssims[i]:.4f}"
    for i in range(b):
        captions[i][-1] = "reference"
    return captions


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return (t.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def render_grid(*columns: torch.Tensor, labels: Sequence[str] | None = None, gt_last: bool | None = None,
                pad: int = 2, min_tile: int = 128) -> Image.Image:
    """The labelled grid as an RGB PIL image (see the module docstring).

    ``columns``: B×3×H×W tensors in [0, 1], all of one size. ``labels``: the column headers
    (:func:`default_labels`). ``gt_last``: the last column is the reference the others are scored against
    (default: three or more columns).
    """
    if not columns:
        raise ValueError("comparison_grid needs at least one column")
    shapes = {tuple(c.shape) for c in columns}
    if len(shapes) != 1 or len(columns[0].shape) != 4:
        raise ValueError(f"grid columns must be B×C×H×W tensors of one shape, got {sorted(shapes)}")
    n = len(columns)
    b, ch, h, w = columns[0].shape
    labels = list(labels) if labels is not None else default_labels(n)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} columns")
    gt_last = n >= 3 if gt_last is None else gt_last
    captions = tile_scores(columns, gt_last)

    scale = max(1, math.ceil(min_tile / max(w, 1)))
    tw, th = w * scale, h * scale
    size = int(min(22, max(11, tw / 13)))
    font, small = _font(size), _font(max(10, int(size * 0.85)))
    header = int(size * 1.8)
    caption = int(small.size * 2.6) if any(any(row) for row in captions) else 0
    width = n * tw + (n + 1) * pad
    height = header + b * (th + caption + pad) + pad
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(labels):
        x0 = pad + c * (tw + pad)
        draw.text((x0 + tw / 2, header / 2), label, fill=INK, font=font, anchor="mm")
    for i in range(b):
        y0 = header + i * (th + caption + pad)
        for c in range(n):
            x0 = pad + c * (tw + pad)
            tile = _to_uint8(columns[c][i])
            tile = np.repeat(tile, 3, axis=2) if tile.shape[2] == 1 else tile[..., :3]
            img = Image.fromarray(tile)
            if scale > 1:
                img = img.resize((tw, th), Image.Resampling.NEAREST)
            canvas.paste(img, (x0, y0))
            if caption and captions[i][c]:
                draw.multiline_text((x0 + tw / 2, y0 + th + caption / 2), captions[i][c], font=small, anchor="mm",
                                    align="center", spacing=2,
                                    fill=MUTED if captions[i][c] == "reference" else INK)
    return canvas


def comparison_grid(*columns: torch.Tensor, labels: Sequence[str] | None = None, gt_last: bool | None = None,
                    pad: int = 2, min_tile: int = 128) -> torch.Tensor:
    """:func:`render_grid` as a 3×H'×W' float tensor in [0, 1] (what TensorBoard's ``add_image`` takes)."""
    img = render_grid(*columns, labels=labels, gt_last=gt_last, pad=pad, min_tile=min_tile)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def save_comparison_grid(path: str | Path, *columns: torch.Tensor, **kwargs) -> Path:
    """Write :func:`render_grid` of ``columns`` as a PNG at ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    render_grid(*columns, **kwargs).save(path)
    return path
