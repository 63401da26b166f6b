"""Building the run's objects from the composed Hydra config."""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.utils.time_budget import steps_within_budget


def set_threads(num_threads: int | None) -> None:
    """Fix torch's CPU thread count (on small shared machines 1–2 threads beat the default)."""
    if num_threads:
        torch.set_num_threads(int(num_threads))


def process_rank() -> int:
    """A number distinct for every process of a distributed run, 0 for the first (and for a single process).

    Read from the launchers' environment (torchrun/Lightning: RANK, or NODE_RANK and LOCAL_RANK; SLURM:
    SLURM_PROCID) before any process group exists. Every process is seeded with ``seed`` for building the model
    and with ``seed + rank`` afterwards: with the same seed everywhere, samples drawn in the main process
    (``num_workers: 0``: random crops, tasks, diffusion times and noise) would repeat on every rank, and DDP would
    average identical gradients.
    """
    import os

    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")) or 0)
    return node * 1024 + local


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
    steps_within_budget(cfg, datamodule)  # only with time_budget_s: max_steps fitted to this machine's speed
    L.seed_everything(cfg.seed, workers=True)
    model = instantiate(cfg.model)  # identical on every rank (same seed); DDP also syncs it from rank 0
    rank = process_rank()
    if rank:  # each further process draws its own crops, degradations, times and noise
        L.seed_everything(int(cfg.seed) + rank, workers=True, verbose=False)
    model.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    trainer = instantiate(cfg.trainer, callbacks=instantiate_dict(cfg.get("callbacks")),
                          logger=instantiate_dict(cfg.get("logger")) or False)
    return datamodule, model, trainer
