import os

import pytest

from src.utils.instantiate import build
from src.utils.time_budget import ENV, steps_within_budget


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


def _cfg(compose_cfg, tmp_path, budget):
    return compose_cfg(["experiment=diffuir_t_demo", "trainer.max_steps=500", f"time_budget_s={budget}",
                        "data.patch_size=32", "data.batch_size=2", "logger=csv"], tmp_path)


def test_budget_lowers_steps_and_the_schedule_follows(compose_cfg, tmp_path, clean_env, capsys):
    cfg = _cfg(compose_cfg, tmp_path, 0.5)  # far less than 500 steps take anywhere
    _, model, _ = build(cfg)
    steps = int(cfg.trainer.max_steps)
    assert 1 <= steps < 500 and os.environ[ENV] == str(steps)
    sched = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert sched.total_steps == steps  # one-cycle's total_steps: ${trainer.max_steps}, resolved after the change


def test_no_budget_keeps_steps_and_a_launched_rank_reuses_the_measurement(compose_cfg, tmp_path, clean_env,
                                                                          monkeypatch):
    cfg = compose_cfg(["experiment=diffuir_t_demo", "trainer.max_steps=500"], tmp_path)
    assert steps_within_budget(cfg, None) is None and cfg.trainer.max_steps == 500
    monkeypatch.setenv(ENV, "37")  # what the launching process measured, inherited by the DDP ranks it starts
    cfg = _cfg(compose_cfg, tmp_path, 100)
    assert steps_within_budget(cfg, None) == 37 and cfg.trainer.max_steps == 37
