"""Tiled inference (src/utils/tiling.py): tile layout, a blend that sums to one, tiled == untiled, the noise field."""

import pytest
import torch
import torch.nn.functional as F

from src.utils.tiling import (
    BlockNoise,
    axis_weights,
    raised_cosine_ramp,
    tile_boxes,
    tile_starts,
    tiled_apply,
)


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (64, 32, 8), (33, 32, 8), (31, 32, 8), (500, 64, 0),
                                                 (257, 64, 31), (96, 32, 16)])
def test_tiles_cover_with_at_least_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # neighbours overlap ≥ overlap
    assert starts == sorted(set(starts))


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (33, 32, 8), (257, 64, 31), (96, 32, 16), (20, 32, 8)])
def test_blend_weights_are_positive_and_sum_to_one(length, tile, overlap):
    starts, size, weights = axis_weights(length, tile, overlap)
    total = torch.zeros(length)
    for s, w in zip(starts, weights):
        assert w.shape == (size,) and (w > 0).all() and (w <= 1 + 1e-6).all()
        total[s:s + size] += w
    assert torch.allclose(total, torch.ones(length), atol=1e-6)


def test_ramp_is_a_smooth_raised_cosine():
    r = raised_cosine_ramp(16)
    assert (r > 0).all() and (r < 1).all() and (r.diff() > 0).all()
    assert torch.allclose(r + r.flip(0), torch.ones(16), atol=1e-6)  # symmetric cross-fade of two tiles sums to 1


@pytest.mark.parametrize("shape,tile,overlap,batch", [((3, 70, 45), 32, 8, 1), ((3, 64, 64), 32, 16, 3),
                                                      ((1, 17, 90), 16, 4, 2), ((3, 20, 20), 32, 8, 1)])
def test_tiled_equals_untiled_for_a_pointwise_function(shape, tile, overlap, batch):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    seen = []

    def fn(tiles, boxes):
        seen.append((tiles.shape, len(boxes)))
        return torch.cat([tiles.sin() * 2 + 0.5, tiles.mean(1, keepdim=True)], dim=1)  # C' = C + 1

    out = tiled_apply(fn, x, tile, overlap, batch_size=batch)
    expected = torch.cat([x.sin() * 2 + 0.5, x.mean(0, keepdim=True)], dim=0)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-5)
    # bounded memory: the function never sees more than `batch` tiles, each at most tile × tile
    assert all(n <= batch and s[-1] <= tile and s[-2] <= tile for s, n in seen)
    assert sum(n for _, n in seen) == len(tile_boxes(shape[1], shape[2], tile, overlap))


def test_tiles_see_their_crop_of_one_noise_field():
    x = torch.rand(3, 75, 130)
    field = BlockNoise(seed=7, channels=3, block=16)
    untiled = x + field.crop(0, 0, 75, 130)
    tiled = tiled_apply(lambda t, boxes: t + torch.stack([field.crop(*b) for b in boxes]), x, 32, 8, batch_size=4)
    assert torch.allclose(tiled, untiled, atol=1e-6)


def test_local_function_is_close_to_untiled_and_exact_away_from_seams():
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    kernel = torch.full((3, 1, 3, 3), 1 / 9)

    def blur(t):
        return F.conv2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)

    tiled = tiled_apply(lambda t, boxes: blur(t), x[0], 32, 12)
    untiled = blur(x)[0]
    err = (tiled - untiled).abs()
    assert err.max() < 0.02 and err.mean() < 1e-3
    y1, x1 = tile_starts(64, 32, 12)[1], tile_starts(96, 32, 12)[1]
    assert err[:, :y1, :x1].max() < 1e-6  # covered by the first tile only, whose edges are ≥ 1 px away


def test_block_noise_windows_are_consistent_and_standard_normal():
    field = BlockNoise(seed=3, channels=2, block=8)
    full = field.crop(0, 0, 40, 50)
    assert torch.equal(field.crop(5, 13, 20, 30), full[:, 5:25, 13:43])
    assert torch.equal(BlockNoise(seed=3, channels=2, block=8).crop(5, 13, 20, 30), full[:, 5:25, 13:43])
    assert not torch.equal(BlockNoise(seed=4, channels=2, block=8).crop(0, 0, 40, 50), full)
    big = BlockNoise(seed=0).crop(0, 0, 256, 256)
    assert abs(big.mean().item()) < 0.02 and abs(big.std().item() - 1) < 0.02


def test_invalid_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 32, 32)
    with pytest.raises(ValueError, match="C×H×W"):
        tiled_apply(lambda t, b: t, torch.rand(1, 3, 8, 8), 4, 1)
    with pytest.raises(ValueError, match="returned shape"):
        tiled_apply(lambda t, b: t[..., :2, :2], torch.rand(3, 8, 8), 4, 1)
