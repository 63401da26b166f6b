"""logger=mlflow: runs record their whole config and metrics in a local MLflow file store (no server, offline): a
single run under its folder, a --multirun in one store for the sweep. Each store is read back in a fresh process
with only the documented MLFLOW_ALLOW_FILE_STORE=true (conf/logger/mlflow.yaml). Skipped when mlflow is not installed
(`pip install -e '.[mlflow]'`)."""

import json
import os
import subprocess
import sys

import pytest

from src.train import train
from tests.conftest import ROOT

BASE = ["experiment=diffuir_t", "debug=default", "model.net.dim=8", "num_threads=1", "trainer=cpu"]

READ_BACK = """
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri="file:" + sys.argv[1])
out = []
for exp in client.search_experiments():
    for run in client.search_runs([exp.experiment_id]):
        loss = client.get_metric_history(run.info.run_id, "train/loss")
        out.append({"experiment": exp.name, "name": run.info.run_name, "status": run.info.status,
                    "params": run.data.params, "metrics": run.data.metrics, "loss_steps": [m.step for m in loss]})
print(json.dumps(out))
"""


def read_store(store) -> list[dict]:
    """Every run of a file store, read by a new process whose environment holds only the documented variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    proc = subprocess.run([sys.executable, "-c", READ_BACK, str(store)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_step_run_writes_an_mlflow_file_store_with_the_whole_config(compose_cfg, tmp_path):
    pytest.importorskip("mlflow")
    cfg = compose_cfg([*BASE, "logger=mlflow", "trainer.max_steps=1", "trainer.val_check_interval=1"], tmp_path)
    assert cfg.logger.mlflow.tracking_uri == f"file:{tmp_path}/mlruns"
    train(cfg)
    store = tmp_path / "mlruns"
    assert store.is_dir() and not (tmp_path / "tensorboard").exists()
    (run,) = read_store(store)
    assert run["experiment"] == cfg.task_name and run["status"] == "FINISHED"
    assert run["loss_steps"] == [0] and "test/psnr_out" in run["metrics"]  # the test after the fit logs there too
    params = run["params"]
    assert params["model/optimizer/lr"] == str(cfg.model.optimizer.lr)  # the whole config, resolved
    assert params["model/net/dim"] == "8" and params["model/diffusion/delta_end"] == str(cfg.model.diffusion.delta_end)
    assert params["data/batch_size"] == "2" and params["trainer/max_steps"] == "1" and params["seed"] == "10"
    assert params["model/diffusion/shared_distribution"] == "True"  # the ablation switches
    assert len(params) > 60


@pytest.mark.slow
def test_a_sweep_writes_one_store_with_one_run_per_job(tmp_path):
    """Two Table 3 jobs with logger=mlflow: one store in the sweep folder, runs named by their overrides (~2 min)."""
    pytest.importorskip("mlflow")
    sweep = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(tmp_path)}
    args = [*BASE, "logger=mlflow", "trainer.max_steps=1", "model.diffusion.delta_end=2.0e-4,1.8e-3"]
    proc = subprocess.run([sys.executable, "-m", "src.train", "--multirun", *args, f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (sweep / "mlruns").is_dir() and not list(sweep.glob("*/mlruns"))  # one store, none per job
    runs = sorted(read_store(sweep / "mlruns"), key=lambda r: r["name"])
    assert [r["name"][:2] for r in runs] == ["0_", "1_"]  # <job number>_<its overrides>
    assert "model.diffusion.delta_end=0.0002" in runs[0]["name"] and "delta_end=0.0018" in runs[1]["name"]
    assert [r["params"]["model/diffusion/delta_end"] for r in runs] == ["0.0002", "0.0018"]
    assert all(r["status"] == "FINISHED" and r["loss_steps"] == [0] for r in runs)
