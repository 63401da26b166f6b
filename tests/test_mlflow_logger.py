"""logger=mlflow: a one-step run records its parameters and metrics in a local MLflow file store under the run
folder (no server, offline). Skipped when mlflow is not installed (`pip install -e '.[mlflow]'`)."""

import pytest

from src.train import train

BASE = ["experiment=diffuir_t", "debug=default", "model.net.dim=8", "num_threads=1", "trainer=cpu"]


def test_one_step_run_writes_an_mlflow_file_store(compose_cfg, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    cfg = compose_cfg([*BASE, "logger=mlflow", "trainer.max_steps=1", "trainer.val_check_interval=1"], tmp_path)
    assert cfg.logger.mlflow.tracking_uri == f"file:{tmp_path}/mlruns"
    train(cfg)
    store = tmp_path / "mlruns"
    assert store.is_dir() and not (tmp_path / "tensorboard").exists()
    client = mlflow.tracking.MlflowClient(tracking_uri=f"file:{store}")
    experiment = client.get_experiment_by_name(cfg.task_name)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) == 1 and history[0].step == 0 and history[0].value > 0
    assert "test/psnr_out" in run.data.metrics  # the test after the fit logs there too
    assert run.data.params  # the hyper-parameters
