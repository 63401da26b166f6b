"""Tiled inference: overlapping tiles, a raised-cosine blend that sums to one, and a seeded noise field.

An image is cut into a grid of equal ``tile``×``tile`` tiles (smaller only where the image is), spread evenly so
that neighbours overlap by at least ``overlap`` pixels. Each tile's output is weighted by a separable window: 1 in
its interior and a raised-cosine (Hann) ramp over the ``overlap`` pixels next to every edge it shares with a
neighbour (edges on the image border get no ramp). The windows are normalised so that at every pixel the weights
of the tiles covering it sum to exactly one; the result is a smooth cross-fade with no seam and no brightness
change, and for a per-pixel function tiled and untiled outputs are equal up to float rounding.

Memory: the function sees ``batch_size`` tiles at a time (the model's memory is that of one tile batch, whatever
the image size); the image, the output and the 1-D weights stay on the CPU.

:class:`BlockNoise` is a standard-normal noise field over the whole plane, generated in fixed blocks from
``(seed, block row, block column)``: any window of it is reproducible on its own, so every tile can take its crop
of *the same* field an untiled run would draw, without the full field ever being materialised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``min(tile, length)`` covering ``[0, length)`` with overlaps ≥ ``overlap``.

    The fewest tiles that achieve the overlap, spread evenly (first at 0, last ending at ``length``).
    """
    if length <= 0 or tile <= 0:
        raise ValueError(f"length and tile must be positive, got length={length}, tile={tile}")
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def fitted_tile(length: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The smallest tile side (a multiple of ``multiple``, at most ``tile``) that covers ``length`` with as many
    tiles as side ``tile`` needs: neighbours then overlap by ``overlap`` plus at most the rounding, instead of the
    up to ``tile`` − ``overlap`` extra pixels a full-size last tile can add (no pixel computed twice beyond the
    overlap). ``length`` itself when one tile covers it."""
    if length <= tile:
        return length
    n = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length + (n - 1) * overlap) / n / multiple) * multiple
    return max(min(side, tile), overlap + 1)


def raised_cosine_ramp(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` samples of a raised-cosine ramp rising from ~0 to ~1, strictly inside (0, 1)."""
    k = torch.arange(n, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(math.pi * (k + 0.5) / n)).to(dtype)


def axis_weights(length: int, tile: int, overlap: int) -> tuple[list[int], int, list[torch.Tensor]]:
    """Tile starts, tile size and the normalised 1-D blend weight of each tile along one axis.

    ``sum_i weights[i][p - starts[i]]`` over the tiles covering position ``p`` is 1 for every ``p``.
    """
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    ramp_len = min(overlap, size // 2) if len(starts) > 1 else 0
    ramp = raised_cosine_ramp(ramp_len, torch.float64)
    raw = []
    for i in range(len(starts)):
        w = torch.ones(size, dtype=torch.float64)
        if ramp_len and i > 0:
            w[:ramp_len] = ramp
        if ramp_len and i < len(starts) - 1:
            w[size - ramp_len:] = torch.minimum(w[size - ramp_len:], ramp.flip(0))
        raw.append(w)
    total = torch.zeros(length, dtype=torch.float64)
    for s, w in zip(starts, raw):
        total[s:s + size] += w
    weights = [(w / total[s:s + size]).float() for s, w in zip(starts, raw)]
    return starts, size, weights


def _pair(tile: int | tuple[int, int]) -> tuple[int, int]:
    return (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))


def tile_boxes(height: int, width: int, tile: int | tuple[int, int],
               overlap: int) -> list[tuple[int, int, int, int]]:
    """``(y0, x0, h, w)`` of every tile, row by row (``tile``: a side, or (rows, columns))."""
    tile_h, tile_w = _pair(tile)
    ys, th, _ = axis_weights(height, tile_h, overlap)
    xs, tw, _ = axis_weights(width, tile_w, overlap)
    return [(y, x, th, tw) for y in ys for x in xs]


def tiled_apply(
    fn: Callable[[torch.Tensor, Sequence[tuple[int, int, int, int]]], torch.Tensor],
    image: torch.Tensor,
    tile: int | tuple[int, int],
    overlap: int,
    batch_size: int = 1,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping tiles of ``image`` (C×H×W) and blend the outputs into one C'×H×W tensor.

    ``tile``: the tile side, or (rows, columns). ``fn(tiles, boxes)`` gets an N×C×h×w batch (N ≤ ``batch_size``,
    every tile the same size) and the tiles' ``(y0, x0, h, w)`` boxes in ``image``, and returns N×C'×h×w.
    ``progress(n)`` is called after each batch with the number of tiles just done. The output is float32 on
    ``image``'s device.
    """
    if image.ndim != 3:
        raise ValueError(f"expected a C×H×W image, got shape {tuple(image.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    _, height, width = image.shape
    tile_h, tile_w = _pair(tile)
    ys, th, wy = axis_weights(height, tile_h, overlap)
    xs, tw, wx = axis_weights(width, tile_w, overlap)
    jobs = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    out: torch.Tensor | None = None
    for first in range(0, len(jobs), batch_size):
        chunk = jobs[first:first + batch_size]
        boxes = [(ys[iy], xs[ix], th, tw) for iy, ix in chunk]
        tiles = torch.stack([image[:, y:y + h, x:x + w] for y, x, h, w in boxes])
        result = fn(tiles, boxes)
        if result.ndim != 4 or result.shape[0] != len(chunk) or tuple(result.shape[-2:]) != (th, tw):
            raise ValueError(f"fn returned shape {tuple(result.shape)} for {len(chunk)} tiles of {th}×{tw}")
        result = result.to(device=image.device, dtype=torch.float32)
        if out is None:
            out = torch.zeros(result.shape[1], height, width, dtype=torch.float32, device=image.device)
        for (iy, ix), (y, x, h, w), r in zip(chunk, boxes, result):
            weight = wy[iy].to(image.device)[:, None] * wx[ix].to(image.device)[None, :]
            out[:, y:y + h, x:x + w] += r * weight
        if progress is not None:
            progress(len(chunk))
    assert out is not None
    return out


def mix_seed(*values: int) -> int:
    """A 63-bit hash of integers (splitmix64 steps), stable across processes and platforms."""
    z = 0x9E3779B97F4A7C15
    for v in values:
        z = (z ^ (v & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        z = (z + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z & 0x7FFFFFFFFFFFFFFF


class BlockNoise:
    """A seeded standard-normal field ``channels``×∞×∞, generated block by block (``block``×``block`` pixels).

    ``crop(y0, x0, h, w)`` is the same window of the same field whichever other windows are asked for, so a tiled
    run and an untiled run (``crop(0, 0, H, W)``) see identical noise at every pixel.
    """

    def __init__(self, seed: int, channels: int = 3, block: int = 64):
        if block < 1:
            raise ValueError("block must be ≥ 1")
        self.seed, self.channels, self.block = int(seed), int(channels), int(block)

    def _block(self, by: int, bx: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, by, bx))
        return torch.randn(self.channels, self.block, self.block, generator=gen)

    def crop(self, y0: int, x0: int, h: int, w: int) -> torch.Tensor:
        """The field on rows ``y0…y0+h-1`` and columns ``x0…x0+w-1`` (C×h×w, float32, CPU)."""
        if h <= 0 or w <= 0:
            raise ValueError(f"empty crop {h}×{w}")
        b = self.block
        by0, by1 = y0 // b, (y0 + h - 1) // b
        bx0, bx1 = x0 // b, (x0 + w - 1) // b
        canvas = torch.empty(self.channels, (by1 - by0 + 1) * b, (bx1 - bx0 + 1) * b)
        for by in range(by0, by1 + 1):
            for bx in range(bx0, bx1 + 1):
                canvas[:, (by - by0) * b:(by - by0 + 1) * b, (bx - bx0) * b:(bx - bx0 + 1) * b] = self._block(by, bx)
        oy, ox = y0 - by0 * b, x0 - bx0 * b
        return canvas[:, oy:oy + h, ox:ox + w].contiguous()
