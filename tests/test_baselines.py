"""src.baselines: each classical method against a property it must have, the registry, the per-image best, the
note when bm3d is missing, and the baseline columns of the suite's tables (src.reporting)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from src.baselines import BASELINES, baseline_scores, baselines_for, best_baseline, run_baselines, skipped_notes
from src.baselines.auto_levels import auto_levels
from src.baselines.bm3d_denoise import bm3d_available, bm3d_denoise
from src.baselines.clahe import clahe
from src.baselines.dark_channel import atmospheric_light, dark_channel, dehaze, transmission
from src.baselines.gamma import gamma_to_mean
from src.baselines.guided_filter import guided_filter
from src.baselines.median import median_filter
from src.baselines.nlm import nlm_denoise
from src.baselines.noise_level import estimate_noise_sigma
from src.data.degradations import gaussian_noise
from src.metrics.fidelity import psnr
from src.tasks import TASKS


def smooth_image(n: int = 64) -> np.ndarray:
    """Smooth colour ramps and a soft sinusoid: what a denoiser should recover well."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n
    return np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * np.sin(3 * y) * x, 0.8 - 0.5 * y], axis=2).astype(np.float32)


@pytest.fixture(scope="module")
def noisy():
    gt = smooth_image()
    return gt, gaussian_noise(gt, 25.0, np.random.default_rng(0))


def test_noise_level_estimate_is_close(noisy):
    _, lq = noisy
    assert estimate_noise_sigma(lq) == pytest.approx(25.0, rel=0.15)


@pytest.mark.skipif(not bm3d_available(), reason="bm3d not installed (pip install -e .[baselines])")
def test_bm3d_raises_psnr_on_a_noisy_smooth_image(noisy):
    gt, lq = noisy
    out = bm3d_denoise(lq, 25.0)
    assert out.shape == gt.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert psnr(out, gt) > psnr(lq, gt) + 8.0


def test_nlm_raises_psnr_on_a_noisy_smooth_image(noisy):
    gt, lq = noisy
    out = nlm_denoise(lq, 25.0)
    assert out.shape == gt.shape and out.dtype == np.float32
    assert psnr(out, gt) > psnr(lq, gt) + 5.0


def test_gamma_maps_the_mean_to_045():
    dark = (smooth_image() * 0.15).astype(np.float32)
    out = gamma_to_mean(dark)
    assert out.mean() == pytest.approx(0.45, abs=1e-3)
    assert np.all(np.diff(out[0, :, 0]) >= 0)  # monotone: the ramp stays a ramp
    bright = np.clip(smooth_image() * 1.3, 0, 1)
    assert gamma_to_mean(bright).mean() == pytest.approx(0.45, abs=1e-3)


def test_auto_levels_stretches_each_channel_to_full_range():
    """A dull, tinted copy of an image (each channel squeezed into its own narrow band) comes back to the
    original's per-channel range; clipped quantiles go to 0 and 1; a flat channel is left alone."""
    img = smooth_image()
    lo, hi = img.min(axis=(0, 1)), img.max(axis=(0, 1))
    full = (img - lo) / (hi - lo)  # each channel spans [0, 1]
    dull = (0.3 + 0.2 * full * np.array([1.0, 0.8, 0.6], np.float32)).astype(np.float32)
    out = auto_levels(dull, clip=0.0)
    assert out.dtype == np.float32 and np.abs(out - full).max() < 1e-4
    noise = np.random.default_rng(0).uniform(0.2, 0.6, (64, 64, 3)).astype(np.float32)  # no tied values
    clipped = auto_levels(noise, clip=0.05)
    for c in range(3):
        ch = clipped[..., c]
        assert 0.04 <= float((ch == 0).mean()) <= 0.06 and 0.04 <= float((ch == 1).mean()) <= 0.06
    flat = dull.copy()
    flat[..., 1] = 0.4
    assert np.allclose(auto_levels(flat)[..., 1], 0.4)
    with pytest.raises(ValueError, match="clip"):
        auto_levels(dull, clip=0.5)


def test_clahe_stays_in_range_and_raises_local_contrast():
    flat = (0.4 + 0.05 * smooth_image()).astype(np.float32)
    out = clahe(flat)
    assert out.shape == flat.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert out.std() > 1.5 * flat.std()


def test_dark_channel_prior_recovers_a_known_transmission():
    """A scene whose every pixel has one channel at 0 (dark channel 0, the prior holds exactly), hazed with a
    smooth known transmission and airlight: the estimate matches t up to the patch's slope, and dehazing helps."""
    rng = np.random.default_rng(1)
    n = 96
    scene = rng.uniform(0.2, 1.0, (n, n, 3)).astype(np.float32)
    scene[np.arange(n)[:, None], np.arange(n)[None, :], rng.integers(0, 3, (n, n))] = 0.0
    t = np.tile(np.linspace(0.1, 0.9, n, dtype=np.float32)[None, :], (n, 1))
    a = np.array([0.9, 0.88, 0.85], dtype=np.float32)
    hazy = scene * t[..., None] + a * (1 - t[..., None])
    assert np.abs(dark_channel(scene, 15)).max() == 0
    raw = transmission(hazy, a, patch=15, omega=1.0, radius=0)
    assert np.abs(raw - t).max() < 0.06  # the max of t over a 15-wide patch: 7 px × 0.8/95 per px = 0.059
    refined = transmission(hazy, a, patch=15, omega=1.0, radius=8, eps=1e-3)
    assert np.abs(refined - t)[8:-8, 8:-8].mean() < 0.08  # the guide's texture leaks in a little
    assert np.abs(atmospheric_light(hazy, dark_channel(hazy, 15)) - a).max() < 0.1  # haziest: 0.1·J + 0.9·A
    assert psnr(dehaze(hazy), scene) > psnr(hazy, scene) + 3.0


def test_guided_filter_keeps_edges_and_flattens_with_large_eps():
    img = np.zeros((32, 32), np.float32)
    img[:, 16:] = 1.0
    assert np.abs(guided_filter(img, img, 3, 1e-6) - img).max() < 1e-3  # an edge guided by itself stays
    flat = guided_filter(img, img, 3, 1e3)
    assert flat[16, 15] == pytest.approx(flat[16, 16], abs=0.2)  # huge ε: a box mean across the edge
    with pytest.raises(ValueError, match="guide must be H×W"):
        guided_filter(img[:8], img, 3, 0.1)


def test_median_removes_isolated_streak_pixels():
    img = np.full((16, 16, 3), 0.3, np.float32)
    img[5, 5] = 1.0
    assert np.allclose(median_filter(img, 5), 0.3, atol=1 / 255)
    with pytest.raises(ValueError, match="odd"):
        median_filter(img, 4)


def test_registry_covers_every_task_and_names_settings():
    assert set(BASELINES) == set(TASKS)
    assert baselines_for("blur") == [] and baselines_for("raindrop") == []
    assert {b.key for b in baselines_for("low_light")} == {"gamma", "clahe", "levels"}
    assert {b.key for b in baselines_for("haze")} == {"dcp", "levels"}
    nlm = next(b for b in BASELINES["noise"] if b.key == "nlm")
    assert nlm.label(50.0).startswith("NLM (σ known=50,") and "σ estimated" in nlm.label(None)
    bm3d = next(b for b in BASELINES["noise"] if b.key == "bm3d")
    assert bm3d.label(50.0) == "BM3D (σ known=50)"
    with pytest.raises(ValueError, match="unknown task 'sunburn'"):
        baselines_for("sunburn")


def test_best_baseline_is_the_highest_psnr_of_the_task():
    gt = smooth_image(48)
    lq = (gt * 0.2).astype(np.float32)
    results = run_baselines("low_light", lq, gt)
    best = best_baseline("low_light", lq, gt)
    assert best.psnr == max(r.psnr for r in results) and best.label in {r.label for r in results}
    assert best_baseline("blur", lq, gt) is None
    scores = baseline_scores("low_light", torch.from_numpy(lq).permute(2, 0, 1), torch.from_numpy(gt).permute(2, 0, 1))
    assert scores["psnr_base"] == pytest.approx(best.psnr, abs=1e-6) and scores["baseline"] == best.label
    assert baseline_scores("blur", lq, gt) == {}


def test_blind_too_adds_each_sigma_baseline_with_sigma_estimated(noisy):
    gt, lq = noisy
    known = run_baselines("noise", lq, gt, sigma=25.0)
    both = run_baselines("noise", lq, gt, sigma=25.0, blind_too=True)
    keys = [r.key for r in known]
    assert [r.key for r in both] == [k for key in keys for k in (key, f"{key}_est")]
    by_key = {r.key: r for r in both}
    for r in known:  # the known-σ runs are unchanged, the blind ones use the estimate (BM3D varies in ~1e-4 dB)
        assert by_key[r.key].psnr == pytest.approx(r.psnr, abs=0.01) and by_key[r.key].label == r.label
        blind = next(b for b in BASELINES["noise"] if b.key == r.key)(lq, None)
        assert "σ estimated" in by_key[f"{r.key}_est"].label and "known" not in by_key[f"{r.key}_est"].label
        assert np.abs(by_key[f"{r.key}_est"].out - blind).max() < 1e-3
        assert by_key[f"{r.key}_est"].psnr > psnr(lq, gt) + 3.0  # a real denoising, not the input
    # without a known σ, or for a task without σ, nothing is added
    assert [r.key for r in run_baselines("noise", lq, gt, blind_too=True)] == keys
    assert [r.key for r in run_baselines("low_light", lq, gt, 25.0, blind_too=True)] == ["gamma", "clahe", "levels"]


@pytest.fixture
def no_bm3d(monkeypatch):
    """``import bm3d`` fails (as without the [baselines] extra) in the test using this fixture only."""
    monkeypatch.setitem(sys.modules, "bm3d", None)


def test_without_bm3d_its_column_is_skipped_with_a_note(no_bm3d):
    assert not bm3d_available()
    assert [b.key for b in baselines_for("noise")] == ["nlm"]
    (note,) = skipped_notes("noise")
    assert "BM3D skipped" in note and "pip install -e .[baselines]" in note
    assert skipped_notes("haze") == []
    gt = smooth_image(32)
    lq = gaussian_noise(gt, 25.0, np.random.default_rng(0))
    assert [r.key for r in run_baselines("noise", lq, gt, sigma=25.0)] == ["nlm"]
    with pytest.raises(ImportError, match=r"pip install -e \.\[baselines\]"):
        bm3d_denoise(lq, 25.0)
    from src.reporting.tables import per_task_table, to_markdown
    rows = per_task_table([{"task": "noise", "psnr_in": 20.0, "ssim_in": 0.5, "psnr_out": 25.0, "ssim_out": 0.7,
                            **baseline_scores("noise", lq, gt)}])
    assert "pip install -e .[baselines]" in to_markdown(rows)


def test_tables_show_the_baseline_beside_the_model(tmp_path):
    import csv

    from src.reporting.report import SetResult, set_table_markdown, write_set_table_csv
    from src.reporting.tables import per_task_table, to_markdown, write_csv

    records = [{"task": "haze", "psnr_in": 14.0, "ssim_in": 0.6, "psnr_out": 20.0, "ssim_out": 0.8,
                "psnr_base": 18.0 + i, "ssim_base": 0.7, "baseline": "dark channel prior"} for i in range(2)]
    records.append({"task": "blur", "psnr_in": 24.0, "ssim_in": 0.7, "psnr_out": 25.0, "ssim_out": 0.75})
    rows = per_task_table(records)
    haze = next(r for r in rows if r["task"] == "haze")
    assert haze["psnr_base"] == pytest.approx(18.5) and haze["gap_db"] == pytest.approx(1.5)
    assert haze["baseline"] == "dark channel prior ×2"
    assert "psnr_base" not in next(r for r in rows if r["task"] == "blur")
    md = to_markdown(rows)
    assert "| PSNR best baseline |" in md and "| 18.50 |" in md and "| +1.50 |" in md
    header = next(csv.reader(open(write_csv(rows, tmp_path / "t.csv"))))
    assert header[-4:] == ["psnr_base", "ssim_base", "gap_db", "baseline"]
    # src.eval's set table: the model's PSNR under the metric key "psnr"
    from src.reporting.baseline_columns import add_baseline_columns
    ev = [{**r, "psnr": r["psnr_out"]} for r in records]
    result = SetResult("builtin", add_baseline_columns([{"task": "haze", "n": 2, "psnr_in": 14.0, "ssim_in": 0.6,
                                                        "psnr": 20.0}], ev, model_key="psnr"), ["psnr"])
    md = set_table_markdown(result, {})
    assert "PSNR best baseline" in md and "| 18.50 |" in md and "+1.50" in md
    header = next(csv.reader(open(write_set_table_csv(result, {}, tmp_path / "m.csv"))))
    assert "psnr_base" in header and "gap_db" in header
