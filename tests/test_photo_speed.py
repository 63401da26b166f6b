"""Whole photos (issue 18): fitted tile shapes, tiles batched through the engine (one compilation, the same output
as tile by tile), the precision choice on the command line, and benchmarks/photo_speed.py and gpu.sh end to end."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.diffuir import engines
from src.diffuir.diffusion import ResidualDiffusion
from src.diffuir.module import DiffUIRModule
from src.diffuir.unet import DiffUIRUNet
from src.inference import Restorer
from src.utils.tiling import fitted_tile, tile_boxes, tile_starts

HAS_OV = importlib.util.find_spec("openvino") is not None
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("height,width,tile", [(3000, 4000, 512), (3000, 4000, 1024), (1632, 2448, 512),
                                               (816, 1224, 1024), (200, 1000, 256), (520, 40, 512)])
def test_plan_fits_tiles_so_no_pixel_is_computed_twice_beyond_the_overlap(height, width, tile):
    overlap, multiple = 64, 16
    n, (th, tw) = Restorer.plan(height, width, multiple, tile, overlap)
    old_n, (oh, ow) = Restorer.plan(height, width, multiple, tile, overlap, fit=False)
    assert (oh, ow) == (min(tile, -(-height // multiple) * multiple), min(tile, -(-width // multiple) * multiple))
    assert n == old_n and th <= oh and tw <= ow and th % multiple == 0 and tw % multiple == 0
    assert n * th * tw <= old_n * oh * ow
    ph, pw = (-(-s // multiple) * multiple for s in (height, width))
    for length, side in ((ph, th), (pw, tw)):
        assert side == fitted_tile(length, tile, overlap, multiple)
        starts = tile_starts(length, side, overlap)
        assert starts[0] == 0 and starts[-1] + side == length  # covers the axis
        overlaps = [side - (b - a) for a, b in zip(starts, starts[1:])]
        assert all(overlap <= o <= overlap + 2 * multiple + 1 for o in overlaps), overlaps
    assert len(tile_boxes(ph, pw, (th, tw), overlap)) == n


def test_a_12_megapixel_photo_computes_far_fewer_pixels_with_fitted_tiles():
    n, (th, tw) = Restorer.plan(3000, 4000, 16, 1024, 64)
    old_n, (oh, ow) = Restorer.plan(3000, 4000, 16, 1024, 64, fit=False)
    assert n * th * tw / (3008 * 4000) < 1.16 < 1.7 < old_n * oh * ow / (3008 * 4000)


def _module(seed: int = 0, dim: int = 8) -> DiffUIRModule:
    torch.manual_seed(seed)
    net = DiffUIRUNet(dim=dim, dim_mults=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return DiffUIRModule(net, ResidualDiffusion(), optimizer=torch.optim.Adam, ema=None).eval()


@pytest.mark.skipif(not HAS_OV, reason="openvino not installed")
def test_tiles_batched_through_openvino_equal_the_current_tile_by_tile_restoration():
    """The current tiling (tile by tile, PyTorch) against tiles batched through OpenVINO's parallel streams: the
    same image to fp32 precision, the tile shape compiled once for all batches (the smaller last one included);
    and with fitted tiles, batched equals tile by tile again."""
    module = _module()
    img = np.random.default_rng(0).random((80, 136, 3)).astype(np.float32)
    current = Restorer(module, tile=64, overlap=16, tile_batch=1, seed=3, fit_tiles=False).restore(img)
    engine = engines.build_engine(module.eval_net, "openvino", threads=2)
    module.inference_net = engine
    restorer = Restorer(module, tile=64, overlap=16, seed=3, fit_tiles=False)
    assert restorer.batch() == 2 and restorer.num_tiles(80, 136) == 6
    batched = restorer.restore(img)
    np.testing.assert_allclose(batched, current, atol=1e-4, rtol=0)
    assert engine.compilations == 1
    odd = Restorer(module, tile=64, overlap=16, seed=3, fit_tiles=False, tile_batch=4)  # batches of 4 and 2
    np.testing.assert_allclose(odd.restore(img), current, atol=1e-4, rtol=0)
    assert engine.compilations == 1
    assert Restorer.plan(80, 136, 16, 64, 16) == (6, (48, 64))  # fitted: 48 rows instead of 64
    fitted = Restorer(module, tile=64, overlap=16, seed=3).restore(img)
    module.inference_net = None
    one_by_one = Restorer(module, tile=64, overlap=16, tile_batch=1, seed=3).restore(img)
    np.testing.assert_allclose(fitted, one_by_one, atol=1e-4, rtol=0)
    assert np.abs(fitted - current).max() > 1e-4  # other tiles, another (equally valid) blend


def test_progress_counts_every_tile_once_with_batches():
    module = _module(1)
    seen = []
    restorer = Restorer(module, tile=32, overlap=8, tile_batch=3)
    restorer.restore(np.zeros((48, 80, 3), np.float32), progress=seen.append)
    assert sum(seen) == restorer.num_tiles(48, 80) == 6 and seen == [3, 3]


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    from benchmarks.photo_speed import random_weights

    return random_weights("T", tmp_path_factory.mktemp("tiny") / "export", dim=8)


def test_restore_says_its_engine_and_precision_first(tiny_export, tmp_path, capsys, monkeypatch):
    """The first output line names the engine and the precision, and why auto chose it; --precision 32 restores
    exactly as the fp32 engine does."""
    from src.restore import main

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    fast = ["--threads", "1", "--no-progress", "--ckpt", str(tiny_export)]
    assert main([str(tmp_path / "a.png"), "--out", str(tmp_path / "32"), "--precision", "32", *fast]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"engine: {engines.resolve('auto')}, precision 32"
    monkeypatch.setattr(engines, "native_bf16", lambda: False)
    assert main([str(tmp_path / "a.png"), "--out", str(tmp_path / "auto"), "--precision", "auto", *fast]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("precision 32 (--precision auto: fp32, this CPU has no native bf16 (AVX-512 BF16 or AMX))")
    same = [np.asarray(Image.open(tmp_path / d / "a.png")) for d in ("32", "auto")]
    assert np.array_equal(*same)
    if HAS_OV and engines._openvino_bf16_ok():
        monkeypatch.setattr(engines, "native_bf16", lambda: True)
        monkeypatch.setattr(engines, "BF16_MIN_PSNR", 0.0)
        assert main([str(tmp_path / "a.png"), "--out", str(tmp_path / "bf16"), "--precision", "auto", *fast]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first.startswith("engine: openvino-bf16, precision bf16 (--precision auto: native bf16 CPU, ")
        assert "dB from fp32 on the check image (≥ 0); --precision 32 for exact fp32)" in first


def test_photo_speed_smoke_times_a_child_restore(tmp_path):
    """benchmarks/photo_speed.py --smoke: one child `python -m src.restore` on a synthesised tiled photo, with its
    wall time, tiles, multiply-adds, GMAC/s and peak memory; cold (no engine cache, no bytecode) and warm (a second
    run)."""
    from benchmarks import photo_speed

    row, warm = photo_speed.main(["--smoke", "--threads", "1", "--out", str(tmp_path / "p"), "--cache", "cold", "warm",
                                  "--rounds", "1"])
    assert (row["cache"], warm["cache"]) == ("cold", "warm") and warm["tiles"] == row["tiles"]
    if "native bf16 CPU" in row["engine_line"]:  # the warm run read the precision check from the cache
        assert "remembered from an earlier run" in warm["engine_line"]
        assert "remembered" not in row["engine_line"]
    assert row["wall_s"] > 0 and row["s_per_mp"] > 0 and 0 < row["restore_s"] < row["wall_s"]
    tiles, (th, tw) = Restorer.plan(96, 128, 16, 64, 16)
    assert row["tiles"] == tiles > 1 and row["tile_shape"] == f"{th}x{tw}"
    assert row["gmacs"] > 0 and 0 < row["overlap_share"] < 1 and row["gmac_per_s"] > 0
    assert 0.05 < row["peak_rss_gb"] < 8 and row["engine_line"].startswith("engine: ")
    md = (tmp_path / "p.md").read_text()
    assert "| DiffUIR-T (width 8, random) | 0 | 96×128 | auto | cold |" in md
    assert "| DiffUIR-T (width 8, random) | 0 | 96×128 | auto | warm |" in md
    assert "Caches (cold: a first run ever" in md and re.search(r"wall cold [\d.]+ s .*; warm [\d.]+ s .*× faster", md)
    assert (tmp_path / "p.csv").read_text().startswith("run,cpu,device")


def test_before_summary_pairs_each_round_of_the_same_command():
    """--before: today's code against a worktree's, ratio per alternated round of one command (never across
    commands or runs), median and range of the wall and restore times."""
    from benchmarks.photo_speed import before_summary

    def row(code, r, wall, restore, mp=12):
        return {"model": "DiffUIR-T (shipped)", "mp": mp, "precision_flag": "auto", "cache": "cold", "code": code,
                "round": r, "wall_s": wall, "restore_s": restore}

    rows = [row("before@abc1234", 0, 180.0, 160.0), row("now", 0, 120.0, 100.0),
            row("now", 1, 118.0, 99.0), row("before@abc1234", 1, 170.0, 150.0),
            row("now", 0, 30.0, 20.0, mp=1)]  # no before row for 1 MP: no line
    lines = before_summary(rows)
    assert len(lines) == 3 and "12 MP" in lines[2] and "1 MP" not in "".join(lines)
    assert "wall 175.0 s [170.0–180.0] → 119.0 s [118.0–120.0], 1.47× (1.44–1.50)" in lines[2]
    assert "restore 155.0 s [150.0–160.0] → 99.5 s [99.0–100.0], 1.56× (1.52–1.60)" in lines[2]
    assert before_summary([row("now", 0, 1.0, 1.0)]) == []


def test_overlap_agreement_compares_each_overlap_with_the_untiled_restoration(tmp_path):
    """--overlaps: tiled against untiled on one photo; more overlap computes more pixels, and a tiled result differs
    from the untiled one (tiny random weights see every tile border: ~20 dB, not the shipped weights' 48-52 dB)."""
    from benchmarks.photo_speed import overlap_agreement, random_weights

    ckpt = random_weights("T", tmp_path / "tiny", dim=8)
    rows = overlap_agreement(ckpt, [24, 8], (96, 160), 64, "32", 1, tmp_path, log=lambda *_: None)
    assert [r["overlap"] for r in rows] == [24, 8]
    assert rows[0]["computed_per_pixel"] > rows[1]["computed_per_pixel"] > 1
    assert all(r["tiles"] > 1 and 10 < r["psnr_vs_untiled"] < 100 and r["max_diff_levels"] > 0 for r in rows)


def test_synthesised_photos_have_the_asked_size_and_detail(tmp_path):
    from benchmarks.photo_speed import synthesise_photo

    path = synthesise_photo(300, 700, tmp_path / "p.jpg")
    img = np.asarray(Image.open(path), np.float32)
    assert img.shape == (300, 700, 3) and img.std() > 20


@pytest.mark.slow  # ~1 min of CPU: two benchmark processes and a restore child (make test-full)
def test_gpu_sh_smoke_runs_both_benchmarks_on_cpu(tmp_path):
    """benchmarks/gpu.sh --smoke: gpu_bench (its sampler section) and the whole-photo benchmark, tiny, on the CPU."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PY": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--smoke", "--sections", "sample", "--out",
                           str(tmp_path / "gpu")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "| sample | DiffUIR-T | 32 |" in (tmp_path / "gpu.md").read_text()  # gpu_bench's sections: test_bench.py
    assert "| DiffUIR-T (width 8, random) | 0 | 96×128 |" in (tmp_path / "photo_speed_gpu.md").read_text()


@pytest.mark.slow  # ~2 min of CPU: three short training runs and an export (make test-full)
def test_gpu_finetune_sh_trains_and_exports_on_cpu(tmp_path):
    """benchmarks/gpu_finetune.sh (the shipped weights' GPU stage) end to end on the CPU: PRECISION=auto's two smoke
    runs (fp32, bf16-mixed) pick one and size the run from its it/s, the run starts from the shipped weights, and the
    export loads as a DiffUIR-T."""
    from benchmarks.photo_speed import synthesise_photo
    from src.utils.checkpoints import load_restoration_model

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        synthesise_photo(96 + 16 * i, 128, photos / f"p{i}.jpg")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PY": sys.executable, "TRAINER": "cpu", "SMOKE_STEPS": "40",
           "TRAIN_S": "5", "DATA_ROOT": str(photos), "LOG_DIR": str(tmp_path / "logs"), "PRECISION": "auto"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_finetune.sh"), str(tmp_path / "out")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "it/s ->" in done.stdout and "wrote" in done.stdout
    assert "smoke runs: fp32" in done.stdout and "bf16-mixed + channels-last" in done.stdout  # PRECISION=auto
    model = load_restoration_model(tmp_path / "out" / "diffuir_t_photos")
    assert model.net.stem.out_channels == 32
    import yaml

    info = yaml.safe_load((tmp_path / "out" / "diffuir_t_photos" / "config.yaml").read_text())
    assert info["initialised_from"]["init_from"].endswith("src/pretrained/diffuir_t_photos")
    assert info["model_config"]["init_from"] is None
