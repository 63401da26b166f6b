"""End-to-end runs of `python -m src.train` on tiny settings: fit + test, resume, CPU DDP, a Table-2 multirun."""

import os
import subprocess
import sys

import torch

from src.train import train
from tests.conftest import ROOT

BASE = ["experiment=diffuir_t", "debug=default", "model.net.dim=8", "num_threads=1"]
TINY = [*BASE, "trainer=cpu"]


def test_fit_then_test_writes_table_grid_and_checkpoint(compose_cfg, tmp_path):
    result = train(compose_cfg(TINY, tmp_path))
    tasks = {r["task"] for r in result["rows"]}
    assert "all" in tasks and len(tasks) >= 2
    for key in ("csv", "markdown", "grid"):
        assert result["paths"][key].is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert any((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))


def test_resume_from_last_ckpt_continues_step_count(compose_cfg, tmp_path):
    train(compose_cfg([*TINY, "test=false", "trainer.max_steps=2"], tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 2
    train(compose_cfg([*TINY, "test=false", "trainer.max_steps=4", f"ckpt_path={last}"], tmp_path / "b"))
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4
    assert int(ckpt["state_dict"]["ema.step"]) == 4  # one EMA update per optimiser step, across the resume


def _run_cli(args, tmp_path, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "src.train", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_two_process_cpu_ddp_fit(tmp_path):
    proc = _run_cli([*BASE, "trainer=ddp_cpu", "test=true", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert "| all |" in proc.stdout + proc.stderr


def test_table2_ablations_run_as_one_multirun_ending_in_one_table(tmp_path):
    _run_cli(["--multirun", *TINY, "sweep=diffuir_table2", "trainer.max_steps=1", "logger=csv",
              f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(runs) == 4 and all((tmp_path / "sweep" / r / "checkpoints" / "last.ckpt").is_file() for r in runs)
    md = (tmp_path / "sweep" / "summary.md").read_text().splitlines()
    rows = [line for line in md if line.startswith("| ") and line[2].isdigit()]
    assert [r.split(" | ")[1:3] for r in rows] == [[f"ablation={a}", "completed"]
                                                   for a in ("full", "no_sdt", "no_ec_sdt", "no_ic_sdt")]
    papers = [line.split(" | ")[1] for line in md if "↳ paper:" in line]
    assert papers == ['↳ paper: DiffUIR Table 2 "DiffUIR"', '↳ paper: DiffUIR Table 2 "-SDT"',
                      '↳ paper: DiffUIR Table 2 "-EC & SDT"', '↳ paper: DiffUIR Table 2 "-IC & SDT"']
    assert (tmp_path / "sweep" / "summary.csv").is_file()
