"""benchmarks.unseen_photos: photos outside the built-in set, degraded per trained task, restored by src.restore's
Restorer; the table's input scores are recomputed here from the definitions."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from benchmarks import unseen_photos
from src.data.builtin import HELDOUT_IMAGES, TRAIN_IMAGES, load_builtin_image
from src.data.degradations import degrade
from src.metrics.fidelity import psnr
from src.tasks import TASKS
from src.train import train
from tests.conftest import compose_train


def test_photos_load_and_are_not_builtin_images():
    for name in unseen_photos.PHOTOS:
        img = unseen_photos.load_photo(name, 64)
        assert img.shape == (64, 64, 3) and img.dtype == np.float32 and 0 <= img.min() < img.max() <= 1
        assert name not in TRAIN_IMAGES + HELDOUT_IMAGES
        for builtin in TRAIN_IMAGES + HELDOUT_IMAGES:  # not a copy of a built-in image either
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


def test_table_covers_every_photo_and_trained_task_with_true_input_scores(two_task_ckpt, tmp_path, capsys):
    assert unseen_photos.main(["--ckpt", str(two_task_ckpt), "--out", str(tmp_path), "--size", "48"]) == 0
    per_image = list(csv.DictReader(open(tmp_path / "unseen_photos.csv")))
    summary = list(csv.DictReader(open(tmp_path / "unseen_photos_summary.csv")))
    assert {(r["photo"], r["task"]) for r in per_image} == {(p, t) for p in unseen_photos.PHOTOS
                                                            for t in ("low_light", "noise")}
    assert sorted(r["task"] for r in summary) == ["all", "low_light", "noise"]
    assert int(next(r for r in summary if r["task"] == "all")["n"]) == len(per_image)
    for i, name in enumerate(unseen_photos.PHOTOS):
        gt = unseen_photos.load_photo(name, 48)
        lq = degrade(gt, "noise", np.random.default_rng([0, i, TASKS.index("noise")]), sigma=50.0)
        row = next(r for r in per_image if r["photo"] == name and r["task"] == "noise")
        assert float(row["psnr_in"]) == pytest.approx(psnr(lq, gt), abs=1e-6)
        assert float(row["gain_db"]) == pytest.approx(float(row["psnr_out"]) - float(row["psnr_in"]), abs=1e-9)
    for name in unseen_photos.PHOTOS:
        assert (tmp_path / f"grid_{name}.png").stat().st_size > 0
    assert "| all |" in capsys.readouterr().out.replace("  ", " ")


def test_bad_flags_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as e:
        unseen_photos.main(["--ckpt", str(tmp_path / "missing.ckpt")])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        unseen_photos.main(["--ckpt", str(tmp_path), "--tasks", "sunburn"])
    assert e.value.code == 2
