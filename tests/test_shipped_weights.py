"""The shipped DiffUIR-T weights (src/pretrained/diffuir_t_builtin, what `python -m src.restore photo.jpg` uses):
present, loadable without pickle, recording how they were trained, and restoring held-out crops they never saw."""

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
