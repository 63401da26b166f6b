"""The labelled comparison grid: a header band naming the columns, tiles placed row by row (enlarged when small),
and under each tile its PSNR / SSIM against the GT column."""

import numpy as np
import pytest
import torch
from PIL import Image

from src.metrics.fidelity import batch_psnr_ssim
from src.reporting.grids import comparison_grid, default_labels, render_grid, save_comparison_grid, tile_scores


def _columns():
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 16, 16)
    lq = (gt + 0.3 * torch.randn_like(gt)).clamp(0, 1)
    out = torch.full_like(gt, 0.5)
    return lq, out, gt


def _dark(region: np.ndarray) -> int:
    return int((region.min(axis=-1) < 100).sum())


def test_grid_places_enlarged_tiles_under_a_label_band():
    lq, out, gt = _columns()
    grid = render_grid(lq, out, gt, pad=2, min_tile=64)  # 16 px tiles drawn 4× (nearest)
    arr = np.asarray(grid)
    unlabelled = np.asarray(render_grid(lq, out, gt, pad=2, min_tile=64, labels=["", "", ""]))
    assert arr.shape == unlabelled.shape and arr.shape[1] == 3 * 64 + 4 * 2
    band = np.flatnonzero((arr != unlabelled).any(axis=(1, 2)))  # rows where the labels are drawn
    header = band.max() + 1
    assert band.size and _dark(arr[:header]) > 20 and _dark(unlabelled[:header]) == 0
    # restored tile (constant 0.5), row 0 / column 1, right under the band
    y0 = next(y for y in range(header, arr.shape[0]) if (arr[y, 2 + 64 + 2 + 5] == 128).all())
    assert (arr[y0:y0 + 64, 68:132] == 128).all()
    # GT tile, row 0 / column 2: each source pixel became a 4×4 block
    tile = arr[y0:y0 + 64, 134:198].astype(int)
    expected = np.repeat(np.repeat((gt[0].permute(1, 2, 0).numpy() * 255).round().astype(int), 4, 0), 4, 1)
    assert np.abs(tile - expected).max() <= 1


def test_each_tile_prints_its_psnr_and_ssim_against_gt():
    lq, out, gt = _columns()
    captions = tile_scores([lq, out, gt], gt_last=True)
    psnrs, ssims = batch_psnr_ssim(out, gt)
    assert captions[1][1] == f"PSNR {psnrs[1]:.2f} dB\nSSIM {ssims[1]:.4f}" and captions[0][2] == "reference"
    scored = np.asarray(render_grid(lq, out, gt, min_tile=64))
    plain = np.asarray(render_grid(lq, out, gt, min_tile=64, gt_last=False))
    assert scored.shape[1] == plain.shape[1] and scored.shape[0] > plain.shape[0]  # a caption strip per row
    # the caption strips hold text: where the tiles end, dark glyphs under the LQ and restored columns
    strip = scored[-30:-2]
    assert _dark(strip[:, 2:66]) > 10 and _dark(strip[:, 68:132]) > 10
    # different scores, different captions (the tiles themselves identical)
    better = np.asarray(render_grid(lq, gt * 0.98, gt, min_tile=64))
    assert better.shape == scored.shape and (better[-30:-2, 68:132] != scored[-30:-2, 68:132]).any()


def test_labels_default_to_lq_restored_gt_and_shapes_are_checked(tmp_path):
    assert default_labels(3) == ["LQ", "restored", "GT"] and default_labels(2) == ["LQ", "restored"]
    assert default_labels(4) == ["LQ", "output 1", "output 2", "GT"]
    lq, out, gt = _columns()
    assert tile_scores([lq, out], gt_last=False) == [["", ""], ["", ""]]
    tensor = comparison_grid(lq, out, gt)
    assert tensor.shape[0] == 3 and 0 <= tensor.min() and tensor.max() <= 1
    path = save_comparison_grid(tmp_path / "g" / "grid.png", lq, out, gt)
    assert Image.open(path).size == (tensor.shape[2], tensor.shape[1])
    with pytest.raises(ValueError, match="one shape"):
        comparison_grid(lq, out[:, :, :8])
    with pytest.raises(ValueError, match="2 labels for 3 columns"):
        comparison_grid(lq, out, gt, labels=["a", "b"])
