"""Experiment loggers that need more than their Lightning class: MLflow in a local file store, one per sweep."""

from __future__ import annotations

import os
from pathlib import Path

# MLflow >= 3.7 keeps its file store in maintenance mode and refuses it unless this variable is "true". The suite sets
# it for its own runs (choosing a ``file:`` URI is the opt-in); to read a store back yourself set it too, e.g.
#   MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <run or sweep folder>/mlruns
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"


def _multirun() -> tuple[Path, str] | None:
    """(sweep folder, this job's name) inside a Hydra --multirun job, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:  # pragma: no cover (hydra-core is a dependency)
        return None
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    return Path(str(hc.sweep.dir)), f"{hc.job.num}_{hc.job.override_dirname}".rstrip("_")


def mlflow_logger(tracking_uri: str, one_store_per_sweep: bool = True, **kwargs):
    """Lightning's ``MLFlowLogger`` writing to ``tracking_uri``, clearly asking for mlflow when it is missing.

    A ``file:`` URI (``conf/logger/mlflow.yaml``: ``<run dir>/mlruns``) is MLflow's local file store: no server,
    no network; the suite sets :data:`FILE_STORE_ENV` for it (an explicit value in the environment wins). In a
    ``--multirun`` job with ``one_store_per_sweep`` the store is ``<sweep folder>/mlruns`` instead, shared by all the
    sweep's jobs (one MLflow run each, named ``<job number>_<overrides>`` unless ``run_name`` is given), so that one
    ``mlflow ui`` compares them. Other URIs (``sqlite:///...``, ``http://...``) are passed through unchanged.
    """
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ImportError("logger=mlflow needs MLflow, an optional extra: pip install -e '.[mlflow]' "
                          "(or choose logger=tensorboard / csv)") from None
    from lightning.pytorch.loggers import MLFlowLogger

    sweep = _multirun() if one_store_per_sweep else None
    if sweep is not None and str(tracking_uri).startswith("file:"):
        tracking_uri = f"file:{sweep[0] / 'mlruns'}"
        if not kwargs.get("run_name"):
            kwargs["run_name"] = sweep[1]
    if str(tracking_uri).startswith("file:"):
        os.environ.setdefault(FILE_STORE_ENV, "true")
    return MLFlowLogger(tracking_uri=tracking_uri, **kwargs)


def config_params(cfg) -> dict:
    """The run's whole composed config (Hydra's own node left out), resolved, for the loggers' hyper-parameters:
    every loss weight, size, learning rate, ablation switch and data setting, not only the module's arguments."""
    from omegaconf import OmegaConf

    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("hydra", None)
    return params
