"""The shipped DiffUIR-T weights (src/pretrained/diffuir_t_photos, what `python -m src.restore photo.jpg` uses):
present, loadable without pickle, recording how they were trained, restoring held-out crops they never saw, and
keeping a noisy photo's brightness."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from src.data.builtin import center_crop, load_builtin_image
from src.data.degradations import degrade
from src.inference import DEFAULT_WEIGHTS, Restorer
from src.metrics.fidelity import psnr
from src.utils.checkpoints import EXPORT_CONFIG, EXPORT_WEIGHTS, load_restoration_model


@pytest.fixture(scope="module")
def restorer():
    return Restorer(load_restoration_model(DEFAULT_WEIGHTS), seed=0, tile=0)


def test_shipped_weights_are_a_small_safetensors_export_of_diffuir_t():
    weights, config = DEFAULT_WEIGHTS / EXPORT_WEIGHTS, DEFAULT_WEIGHTS / EXPORT_CONFIG
    assert weights.is_file() and weights.stat().st_size < 8 * 2**20  # a few MB
    meta = yaml.safe_load(config.read_text())
    assert meta["model_config"]["net"]["dim"] == 32 and meta["model_config"]["net"]["dim_mults"] == [1, 1, 1, 1]
    assert meta["parameters"] == 886_435
    assert set(meta["model_config"]["trained_tasks"]) == {"noise", "low_light", "haze", "rain", "snow"}
    assert meta["model_config"]["init_from"] is None  # the weights are the model: no other file is read to build it


@pytest.mark.parametrize(("task", "params", "min_gain_db"), [
    ("noise", {"sigma": 50.0}, 2.0),
    ("low_light", {}, 3.0),
])
def test_shipped_weights_restore_a_held_out_photo(restorer, task, params, min_gain_db):
    gt = np.ascontiguousarray(center_crop(load_builtin_image("chelsea"), 96))  # held out of every training set
    lq = degrade(gt, task, np.random.default_rng(3), **params).astype(np.float32)
    out = restorer.restore(lq)
    assert out.shape == gt.shape
    assert psnr(out, gt) - psnr(lq, gt) > min_gain_db


def test_restoring_a_noisy_photo_keeps_its_brightness(restorer):
    """Issue 17: the earlier weights returned scikit-learn's china.jpg with σ 25 noise 11 levels darker (mean 144.8 ->
    133.6 of 255) and darkened the clean photo just as much (145.6 -> 133.6): not the sampler's start noise (a zero
    start gave the same), but a haze removal applied to a bright, flat photo. A restorer must keep the brightness."""
    from pathlib import Path

    import sklearn

    from src.utils.images import read_image

    photo = read_image(Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg").rgb
    h, w = photo.shape[:2]
    gt = np.ascontiguousarray(photo[(h - 192) // 2:(h - 192) // 2 + 192, (w - 256) // 2:(w - 256) // 2 + 256])
    lq = degrade(gt, "noise", np.random.default_rng(0), sigma=25.0).astype(np.float32)
    out = restorer.restore(lq)
    assert abs(float(out.mean()) - float(lq.mean())) * 255 <= 2.0
