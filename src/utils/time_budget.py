"""Fit a run's optimizer steps to a wall-clock budget (``time_budget_s``), measured on this machine first.

A short CPU recipe (the README's demo) promises a time; a slower machine would overrun it. Before the model is
built, :func:`steps_within_budget` times a few real training steps (the run's own model, optimizer and first
batch) and lowers ``trainer.max_steps`` so that the run fits, saying so. The schedule (e.g. one-cycle's
``total_steps: ${trainer.max_steps}``) follows, since the model is built after the change. Under DDP the
launching process measures (one rank's batch on one rank's threads) and passes the result to the ranks it
starts through the environment, so every rank trains the same number of steps.
"""

from __future__ import annotations

import os
import statistics
import time

from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, open_dict

ENV = "UIR_BUDGET_STEPS"
MARGIN = 1.15  # the ranks running together, logging and checkpoints cost a little more than a bare step


def time_training_steps(model_cfg: DictConfig, batch: dict, steps: int = 3) -> float:
    """Median seconds of one optimizer step (forward, backward, update) of a fresh model on ``batch``."""
    model = instantiate(model_cfg)
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        loss = model.training_step(batch, i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms the allocator and kernels up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def steps_within_budget(cfg: DictConfig, datamodule) -> int | None:
    """Set ``cfg.trainer.max_steps`` to what fits ``cfg.time_budget_s`` (seconds of training); None: no budget."""
    budget = cfg.get("time_budget_s")
    if not budget or not cfg.get("train", True):
        return None
    planned = int(cfg.trainer.max_steps)
    if os.environ.get(ENV):  # a DDP rank started by the launching process: use its measurement
        steps = int(os.environ[ENV])
    else:
        datamodule.setup("fit")
        batch = next(iter(datamodule.train_dataloader()))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log() outside a Trainer
            per_step = time_training_steps(cfg.model, batch)
        steps = max(1, min(planned, int(budget / (per_step * MARGIN))))
        os.environ[ENV] = str(steps)
        if steps < planned:
            rank_zero_info(f"time budget: {per_step:.2f} s per step on this machine, so {steps} steps instead of "
                           f"{planned} to train within time_budget_s={budget:g} s (the learning-rate schedule "
                           "follows); set time_budget_s=null for the full run")
        else:
            rank_zero_info(f"time budget: {per_step:.2f} s per step, {planned} steps fit time_budget_s={budget:g} s")
    with open_dict(cfg):
        cfg.trainer.max_steps = steps
    return steps
