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
    cfg = compose_cfg(["experiment=diffuir_t_demo", "trainer.max_steps=500", "time_budget_s=null"], tmp_path)
    assert steps_within_budget(cfg, None) is None and cfg.trainer.max_steps == 500
    monkeypatch.setenv(ENV, "37")  # what the launching process measured, inherited by the DDP ranks it starts
    cfg = _cfg(compose_cfg, tmp_path, 100)
    assert steps_within_budget(cfg, None) == 37 and cfg.trainer.max_steps == 37


def test_each_ddp_process_draws_its_own_samples_after_an_identical_model(compose_cfg, tmp_path, monkeypatch):
    import torch

    from src.utils.instantiate import process_rank

    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert process_rank() == 0
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_rank() == 1025
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert process_rank() == 3
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.delenv("NODE_RANK")
    drawn, params = {}, {}
    for rank in ("0", "1"):
        monkeypatch.setenv("LOCAL_RANK", rank)
        _, model, _ = build(compose_cfg(["experiment=diffuir_t_demo", "logger=csv"], tmp_path))
        drawn[rank], params[rank] = torch.rand(4), next(model.net.parameters()).detach().clone()
    assert torch.equal(params["0"], params["1"])  # the same initial model on every rank
    assert not torch.equal(drawn["0"], drawn["1"])  # but not the same random stream


def test_the_demo_under_ddp_counts_each_held_out_image_once(tmp_path):
    """Two DDP processes: the sampler pads 9 held-out images to 10 with a repeat, which the table must not count."""
    import csv
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "src.train", "experiment=diffuir_t_demo", "trainer.max_steps=2",
                           "time_budget_s=null", "data.eval_size=48", "logger=csv", "callbacks=none",
                           f"paths.output_dir={tmp_path}"], cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with (tmp_path / "test_metrics.csv").open() as f:
        counts = {r["task"]: int(r["n"]) for r in csv.DictReader(f)}
    assert counts == {"noise": 3, "rain": 3, "low_light": 3, "all": 9}
