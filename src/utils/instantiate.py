"""Building the run's objects from the composed Hydra config."""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def set_threads(num_threads: int | None) -> None:
    """Fix torch's CPU thread count (on small shared machines 1–2 threads beat the default)."""
    if num_threads:
        torch.set_num_threads(int(num_threads))


def instantiate_dict(cfg: DictConfig | None) -> list:
    """Instantiate each ``_target_`` entry of a mapping (callbacks, loggers) in order."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """DataModule, LightningModule and Trainer of a run (seeded first, workers included)."""
    set_threads(cfg.get("num_threads"))
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    model.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    trainer = instantiate(cfg.trainer, callbacks=instantiate_dict(cfg.get("callbacks")),
                          logger=instantiate_dict(cfg.get("logger")) or False)
    return datamodule, model, trainer
