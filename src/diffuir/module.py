"""The DiffUIR LightningModule: training (Algorithm 1), EMA, and evaluation with the released sampler."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch import nn

from src.data.degradations import TASKS
from src.diffuir.diffusion import ResidualDiffusion
from src.diffuir.official import load_official_unet
from src.metrics.fidelity import batch_psnr_ssim
from src.reporting.grids import comparison_grid, save_comparison_grid
from src.reporting.tables import per_task_table, to_markdown, write_csv
from src.utils.distributed import gather_objects
from src.utils.ema import EMA


class DiffUIRModule(L.LightningModule):
    """Wraps a :class:`DiffUIRUNet` and a :class:`ResidualDiffusion`.

    Training: L1 residual loss at a uniform random time (Eq. 11), Adam; the trainer config adds the official
    gradient clipping (1.0) and accumulation (2). An EMA copy (decay 0.995 every 10 steps) is what validation,
    testing and :meth:`restore` use, as the official test script does. Validation/test log PSNR/SSIM on Y
    (BasicSR convention) of the input and the output, and an LQ | output | GT grid.
    """

    def __init__(
        self,
        net: nn.Module,
        diffusion: ResidualDiffusion,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        ema: dict | None = None,
        init_from_official: str | None = None,
        grid_samples: int = 8,
        task_names: list[str] | None = None,
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
            net.load_state_dict(load_official_unet(init_from_official).state_dict())
        self.net, self.diffusion = net, diffusion
        self.ema = EMA(net, **ema) if ema is not None else None
        self.task_names = list(task_names or TASKS)
        self.model_config: dict | None = None  # the resolved Hydra model config, stored in checkpoints
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
        loss = self.diffusion.loss(self.net, batch["gt"] * 2 - 1, batch["lq"] * 2 - 1)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"DiffUIR loss became {loss.item()} at global step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["gt"].shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # one EMA update per optimiser step (global_step counts those, so accumulation is respected)
        if self.ema is not None and self.trainer.global_step > int(self.ema.step):
            self.ema.update(self.net)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the model's config in the checkpoint so it can be rebuilt from the file alone."""
        if self.model_config is not None:
            checkpoint["uir_model_config"] = self.model_config

    # ------------------------------------------------------------------ inference
    @property
    def eval_net(self) -> nn.Module:
        return self.ema.averaged if self.ema is not None else self.net

    @torch.no_grad()
    def restore(self, lq: torch.Tensor, steps: int | None = None, generator: torch.Generator | None = None):
        """Restore B×3×H×W images in [0, 1] of any size (the U-Net pads and crops back)."""
        out = self.diffusion.sample(self.eval_net, lq * 2 - 1, steps=steps, generator=generator)
        return (out + 1) / 2

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: dict, stage: str) -> None:
        lq, gt = batch["lq"], batch["gt"]
        out = self.restore(lq)
        psnr_in, ssim_in = batch_psnr_ssim(lq, gt)
        psnr_out, ssim_out = batch_psnr_ssim(out, gt)
        for i in range(gt.shape[0]):
            self._eval_records.append({
                "task": self.task_names[int(batch["task"][i])],
                "psnr_in": psnr_in[i], "ssim_in": ssim_in[i], "psnr_out": psnr_out[i], "ssim_out": ssim_out[i],
            })
        if self._grid is None or self._grid[0].shape[0] < self.hparams.grid_samples:
            take = [t[: self.hparams.grid_samples].cpu() for t in (lq, out, gt)]
            self._grid = take if self._grid is None else [torch.cat(p)[: self.hparams.grid_samples]
                                                          for p in zip(self._grid, take)]

    def _eval_epoch_end(self, stage: str) -> list[dict]:
        records = gather_objects(self._eval_records)
        self._eval_records = []
        rows = per_task_table(records)
        for row in rows:
            prefix = f"{stage}/" if row["task"] == "all" else f"{stage}/{row['task']}/"
            for key in ("psnr_in", "ssim_in", "psnr_out", "ssim_out"):
                self.log(prefix + key, row[key])  # identical on every rank (gathered)
        if self._grid is not None and self.trainer.is_global_zero:
            grid = comparison_grid(*self._grid)
            tb = getattr(self.logger, "experiment", None)
            if hasattr(tb, "add_image"):
                tb.add_image(f"{stage}/lq_output_gt", grid, self.global_step)
        return rows

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._eval_records, self._grid = [], None

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._eval_records, self._grid = [], None

    def on_test_epoch_end(self) -> None:
        self.test_rows = self._eval_epoch_end("test")

    def save_test_report(self, out_dir: str | Path, title: str = "held-out set") -> dict[str, Path]:
        """Write the last test's table (CSV, Markdown) and its LQ | output | GT grid (PNG) into ``out_dir``."""
        out_dir = Path(out_dir)
        paths = {"csv": write_csv(self.test_rows, out_dir / "test_metrics.csv")}
        paths["markdown"] = out_dir / "test_metrics.md"
        paths["markdown"].write_text(to_markdown(self.test_rows, title))
        if self._grid is not None:
            paths["grid"] = save_comparison_grid(out_dir / "test_grid.png", *self._grid)
        return paths
