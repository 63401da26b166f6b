"""The DiffUIR LightningModule: training (Algorithm 1), EMA, and evaluation with the released sampler."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import nn

from src.diffuir import engines
from src.diffuir.diffusion import ResidualDiffusion
from src.diffuir.official import load_official_weights, size_name
from src.evaluation.mixin import RestorationEvalMixin
from src.reporting.paper_tables import diffuir_method_for
from src.tasks import TASKS
from src.utils.checkpoints import StoredConfigMixin, load_restoration_model, load_state_dict_checked
from src.utils.ema import EMA


def load_suite_weights(net: nn.Module, path: str) -> nn.Module:
    """Start ``net`` from the restoring weights (the EMA's, when it has one) of a suite DiffUIR checkpoint or
    export folder (``model.init_from``: fine-tuning, e.g. the shipped weights on your own photos), read with the
    suite's one safe loader; a checkpoint of another size or method is refused with the loader's sentence."""
    source = load_restoration_model(path)
    donor = getattr(source, "eval_net", None)
    if not isinstance(donor, nn.Module):
        raise ValueError(f"model.init_from={path}: a {type(source).__name__}, not a DiffUIR checkpoint or export")
    return load_state_dict_checked(net, donor.state_dict(), f"model.init_from={path}")


class DiffUIRModule(StoredConfigMixin, RestorationEvalMixin, L.LightningModule):
    """Wraps a :class:`DiffUIRUNet` and a :class:`ResidualDiffusion`.

    Training: L1 residual loss at a uniform random time (Eq. 11), Adam; the trainer config adds the official
    gradient clipping (1.0) and accumulation (2). An EMA copy (decay 0.995 every 10 steps) is what validation,
    testing and :meth:`restore` use, as the official test script does. Validation/test log PSNR/SSIM on Y
    (BasicSR convention) of the input and the output, and an LQ | output | GT grid.
    """

    # the official test script evaluates low-light sets (LOL) on histogram-equalised inputs, as DiffUIR trains on them
    eval_hist_eq_tasks = ("low_light",)

    def __init__(
        self,
        net: nn.Module,
        diffusion: ResidualDiffusion,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        ema: dict | None = None,
        init_from_official: str | None = None,
        init_from: str | None = None,
        grid_samples: int = 8,
        task_names: list[str] | None = None,
        trained_tasks: list[str] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        # plain values only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["net", "diffusion", "optimizer", "scheduler"], logger=False)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        if net.in_channels != diffusion.network_in_channels:
            raise ValueError(
                f"model.net.in_channels={net.in_channels} does not fit model.diffusion.implicit_condition="
                f"{diffusion.implicit_condition}: the network takes {diffusion.network_in_channels} channels "
                "(6 = x_t ⊕ I_in with the implicit condition, 3 without)"
            )
        if init_from_official:
            load_official_weights(net, init_from_official)  # weights-only; a wrong size is named
        if init_from:
            load_suite_weights(net, init_from)  # fine-tuning: a suite checkpoint or export starts the run
        if channels_last:  # GPU switch (conf/trainer/gpu_fast.yaml): NHWC weights and inputs
            net = net.to(memory_format=torch.channels_last)
        self.net, self.diffusion = net, diffusion
        self.ema = EMA(net, **ema) if ema is not None else None
        if compile:  # torch.compile of the training network in place: parameter names (checkpoints) unchanged
            net.compile()
        self.inference_net: Callable | None = None  # an engine of src.diffuir.engines (use_engine), else eval_net
        self.task_names = list(task_names or TASKS)
        self._eval_records: list[dict] = []
        self._grid: list[torch.Tensor] | None = None
        self.test_rows: list[dict] = []

    # ------------------------------------------------------------------ training
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                                          "interval": "step"}}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        gt, lq = batch["gt"] * 2 - 1, batch["lq"] * 2 - 1
        if self.hparams.get("channels_last"):
            gt, lq = gt.contiguous(memory_format=torch.channels_last), lq.contiguous(memory_format=torch.channels_last)
        loss = self.diffusion.loss(self.net, gt, lq)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"DiffUIR loss became {loss.item()} at global step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["gt"].shape[0])
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # one EMA update per optimiser step (accumulation respected), made here rather than in on_train_batch_end:
        # Lightning runs callbacks' on_train_batch_end (where ModelCheckpoint saves) before the module's, so an EMA
        # updated there is one step behind in every step-based checkpoint, and after a resume forever
        if self.ema is not None:
            self.ema.update(self.net)

    @property
    def paper_method(self) -> str | None:
        """The paper row this model's scores stand beside: Table 1's row of its network size (``DiffUIR-T(ours)``
        …), None for a width the paper has not. Read by ``src.eval``."""
        return diffuir_method_for(size_name(getattr(self.net, "dim", None), getattr(self.net, "dim_mults", ())))

    # ------------------------------------------------------------------ inference
    @property
    def eval_net(self) -> nn.Module:
        return self.ema.averaged if self.ema is not None else self.net

    @torch.no_grad()
    def restore(self, lq: torch.Tensor, steps: int | None = None, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, callback=None):
        """Restore B×3×H×W images in [0, 1] of any size (the U-Net pads and crops back).

        ``noise``: the sampler's start noise, shaped like ``lq`` (drawn with ``generator`` when None); tiled
        restoration (``src.restore``) passes each tile its crop of one noise field over the whole image.
        ``callback(done, total)``: called after each sampling step.
        """
        net = self.inference_net if self.inference_net is not None else self.eval_net
        out = self.diffusion.sample(net, lq * 2 - 1, steps=steps, noise=noise, generator=generator,
                                    callback=callback)
        return (out + 1) / 2

    def use_engine(self, name: str = "auto", device: torch.device | str | None = None,
                   precision: str = "32") -> engines.EngineChoice:
        """The engine hook of :mod:`src.inference`: :meth:`restore` samples with the network on engine ``name`` in
        ``precision`` (:func:`src.diffuir.engines.select_engine`: ``auto`` may pick the bf16 engine); returns the
        choice (engine, precision, note)."""
        return engines.select_engine(self, name, device, precision)

