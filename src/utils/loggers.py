"""Experiment loggers that need more than their Lightning class: MLflow in a local file store."""

from __future__ import annotations

import os


def mlflow_logger(tracking_uri: str, **kwargs):
    """Lightning's ``MLFlowLogger`` writing to ``tracking_uri``, clearly asking for mlflow when it is missing.

    A ``file:`` URI (``conf/logger/mlflow.yaml``: ``<run dir>/mlruns``) is MLflow's local file store: no server,
    no network. MLflow >= 3.7 keeps that store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE``
    is set; choosing a ``file:`` URI in the config is that opt-in (an explicit ``MLFLOW_ALLOW_FILE_STORE`` in the
    environment wins). Other URIs (``sqlite:///...``, ``http://...``) are passed through unchanged.
    """
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ImportError("logger=mlflow needs MLflow, an optional extra: pip install -e '.[mlflow]' "
                          "(or choose logger=tensorboard / csv)") from None
    from lightning.pytorch.loggers import MLFlowLogger

    if str(tracking_uri).startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(tracking_uri=tracking_uri, **kwargs)
