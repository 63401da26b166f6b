"""benchmarks.unseen_photos: photos outside the built-in training set, degraded per trained task (noise once per
σ), restored by src.restore's Restorer beside the task's classical baselines; the table's input and baseline
scores are recomputed here from the definitions."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

from benchmarks import unseen_photos
from src.baselines.gamma import gamma_to_mean
from src.baselines.nlm import nlm_denoise
from src.baselines.noise_level import estimate_noise_sigma
from src.data.builtin import HELDOUT_IMAGES, TRAIN_IMAGES, load_builtin_image
from src.data.degradations import degrade
from src.metrics.fidelity import psnr
from src.tasks import TASKS
from src.train import train
from tests.conftest import compose_train


def test_photos_load_and_are_not_training_images():
    assert set(HELDOUT_IMAGES) < set(unseen_photos.PHOTOS)
    for name in unseen_photos.PHOTOS:
        img = unseen_photos.load_photo(name, 64)
        assert img.shape == (64, 64, 3) and img.dtype == np.float32 and 0 <= img.min() < img.max() <= 1
        assert name not in TRAIN_IMAGES
        for builtin in TRAIN_IMAGES:  # not a copy of a built-in training image either
            ref = load_builtin_image(builtin)
            if ref.shape[0] >= 64 and ref.shape[1] >= 64:
                from src.data.builtin import center_crop
                assert np.abs(center_crop(ref, 64) - img).mean() > 0.02


@pytest.fixture(scope="module")
def two_task_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("unseen")
    train(compose_train(["experiment=diffuir_t", "debug=default", "model.net.dim=8", "num_threads=1", "trainer=cpu",
                         "test=false", "logger=csv", "callbacks.progress_bar.refresh_rate=0",
                         "data.tasks=[low_light,noise]"], out))
    return out / "checkpoints" / "last.ckpt"


def test_table_covers_every_photo_and_task_row_beside_the_baselines(two_task_ckpt, tmp_path, capsys, monkeypatch):
    # BM3D (tested in tests/test_baselines.py) takes seconds per image: this run goes without it, as a user without
    # the [baselines] extra would, and checks the note that says so
    monkeypatch.setitem(sys.modules, "bm3d", None)
    assert unseen_photos.main(["--ckpt", str(two_task_ckpt), "--out", str(tmp_path), "--size", "48",
                               "--sigmas", "15", "50"]) == 0
    per_image = list(csv.DictReader(open(tmp_path / "unseen_photos.csv")))
    summary = list(csv.DictReader(open(tmp_path / "unseen_photos_summary.csv")))
    rows = ("low_light", "noise σ15", "noise σ50")
    assert {(r["photo"], r["task"]) for r in per_image} == {(p, t) for p in unseen_photos.PHOTOS for t in rows}
    assert sorted(r["task"] for r in summary) == sorted(["all", *rows])
    assert int(next(r for r in summary if r["task"] == "all")["n"]) == len(per_image)
    assert {"psnr_base", "ssim_base", "gap_db", "baseline"} <= set(summary[0])
    assert "psnr_bm3d" not in per_image[0]
    for i, name in enumerate(unseen_photos.PHOTOS):
        gt = unseen_photos.load_photo(name, 48)
        lq = degrade(gt, "noise", np.random.default_rng([0, i, TASKS.index("noise"), 1]), sigma=50.0)
        row = next(r for r in per_image if r["photo"] == name and r["task"] == "noise σ50")
        assert float(row["psnr_in"]) == pytest.approx(psnr(lq, gt), abs=1e-6)
        assert float(row["psnr_nlm"]) == pytest.approx(psnr(nlm_denoise(lq, 50.0), gt), abs=1e-6)
        assert float(row["psnr_nlm_est"]) == pytest.approx(psnr(nlm_denoise(lq, estimate_noise_sigma(lq)), gt),
                                                           abs=1e-6)
        known = float(row["psnr_nlm"]) >= float(row["psnr_nlm_est"])  # the best: NLM told σ or NLM blind
        assert float(row["psnr_base"]) == max(float(row["psnr_nlm"]), float(row["psnr_nlm_est"]))
        assert row["baseline"].startswith("NLM (σ known=50" if known else "NLM (σ estimated")
        assert float(row["gain_db"]) == pytest.approx(float(row["psnr_out"]) - float(row["psnr_in"]), abs=1e-9)
        assert float(row["gap_db"]) == pytest.approx(float(row["psnr_out"]) - float(row["psnr_base"]), abs=1e-9)
        dark = next(r for r in per_image if r["photo"] == name and r["task"] == "low_light")
        lq = degrade(gt, "low_light", np.random.default_rng([0, i, TASKS.index("low_light"), 0]))
        assert float(dark["psnr_gamma"]) == pytest.approx(psnr(gamma_to_mean(lq), gt), abs=1e-6)
        assert float(dark["psnr_base"]) == max(float(dark[f"psnr_{k}"]) for k in ("gamma", "clahe", "levels"))
    for name in unseen_photos.PHOTOS:
        assert (tmp_path / f"grid_{name}.png").stat().st_size > 0
    md = (tmp_path / "unseen_photos.md").read_text()
    assert "model − baseline (dB)" in md and "| noise σ15 | NLM (σ known=15," in md
    assert "| noise σ15 | NLM (σ estimated," in md
    assert "BM3D skipped" in md and "pip install -e .[baselines]" in md
    out = capsys.readouterr().out
    assert "| all |" in out.replace("  ", " ") and "pip install -e .[baselines]" in out


def test_bad_flags_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as e:
        unseen_photos.main(["--ckpt", str(tmp_path / "missing.ckpt")])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        unseen_photos.main(["--ckpt", str(tmp_path), "--tasks", "sunburn"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        unseen_photos.main(["--ckpt", str(tmp_path), "--sigmas", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        unseen_photos.main(["--ckpt", str(tmp_path), "--photos", "astronaut"])
    assert e.value.code == 2


def test_readme_figure_shows_input_baseline_restored_and_original(two_task_ckpt, tmp_path, monkeypatch):
    from PIL import Image

    from benchmarks import readme_figure

    monkeypatch.setitem(sys.modules, "bm3d", None)  # NLM is the noise baseline here (BM3D: tests/test_baselines.py)
    out = tmp_path / "fig.jpg"
    r = readme_figure.make_figure(two_task_ckpt, out, "flower", sigma=25.0, size=32)
    gt = unseen_photos.load_photo("flower", 32)
    variant = unseen_photos.SIGMAS.index(25.0)  # the table's "noise σ25" row of that photo
    lq = degrade(gt, "noise", np.random.default_rng([0, list(unseen_photos.PHOTOS).index("flower"),
                                                     TASKS.index("noise"), variant]), sigma=25.0)
    assert r["psnr_in"] == pytest.approx(psnr(lq, gt), abs=1e-6)
    assert r["psnr_base"] == pytest.approx(psnr(nlm_denoise(lq, 25.0), gt), abs=1e-6)
    assert r["baseline"].startswith("NLM (σ known=25")
    width, height = Image.open(out).size
    assert width > 4 * 128 and height > 128  # four labelled tiles (enlarged to at least 128 px)
    with pytest.raises(SystemExit) as e:
        readme_figure.main(["--photo", "moon"])
    assert e.value.code == 2
