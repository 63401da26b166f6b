"""Validation/test behaviour shared by every restoration LightningModule of the suite.

A module mixing this in provides ``restore(lq) -> out`` (B×3×H×W in [0, 1]) and a ``grid_samples``
hyper-parameter. Each evaluated image adds a record (its task, or its test set's name when the batch carries
``source``) with PSNR/SSIM on Y (BasicSR convention) of the input and of the output. A batch's ``task`` label is an
index into :data:`src.tasks.TASKS` in every DataModule of the suite, whichever tasks a run trains and in
whatever order, so the name never depends on the model's or the data's task list. Images of
no-reference sets (``has_gt`` false) are restored and shown but not scored. Test records also carry the best
classical baseline of the image's task (:func:`src.baselines.baseline_scores`), a column of the test table.
Epoch ends log the per-task means and
an LQ | output | GT grid to TensorBoard.
"""

from __future__ import annotations

from pathlib import Path

import torch

from src.baselines import baseline_scores
from src.metrics.fidelity import batch_psnr_ssim
from src.reporting.grids import comparison_grid, save_comparison_grid
from src.reporting.tables import per_task_table, to_markdown, write_csv
from src.tasks import task_name
from src.utils.distributed import gather_objects


class RestorationEvalMixin:
    """validation_step / test_step and their epoch hooks, shared by DiffUIR and Diff-Restorer."""

    # tasks whose benchmark inputs src.eval histogram-equalises for this model (``hist_eq_tasks=auto``)
    eval_hist_eq_tasks: tuple[str, ...] = ()

    _eval_records: list[dict]
    _grid: list[torch.Tensor] | None
    test_rows: list[dict]

    def _eval_step(self, batch: dict, stage: str) -> None:
        lq, gt = batch["lq"], batch["gt"]
        out = self.restore(lq)
        psnr_in, ssim_in = batch_psnr_ssim(lq, gt)
        psnr_out, ssim_out = batch_psnr_ssim(out, gt)
        has_gt = batch.get("has_gt", torch.ones(gt.shape[0], dtype=torch.bool))
        for i in range(gt.shape[0]):
            if not bool(has_gt[i]):
                continue  # no reference: PSNR/SSIM are undefined (no-reference metrics live in src.eval)
            group = batch["source"][i] if "source" in batch else task_name(batch["task"][i])
            self._eval_records.append({"name": batch["name"][i] if "name" in batch else None,
                                       "task": group, "psnr_in": psnr_in[i], "ssim_in": ssim_in[i],
                                       "psnr_out": psnr_out[i], "ssim_out": ssim_out[i],
                                       **(baseline_scores(task_name(batch["task"][i]), lq[i], gt[i])
                                          if stage == "test" else {})})
        n = self.hparams.grid_samples
        if self._grid is None or self._grid[0].shape[0] < n:
            take = [t[:n].detach().cpu() for t in (lq, out, gt)]
            self._grid = take if self._grid is None else [torch.cat(p)[:n] for p in zip(self._grid, take)]

    def _eval_epoch_end(self, stage: str) -> list[dict]:
        records, seen = [], set()
        for r in gather_objects(self._eval_records):  # DDP pads the last batches with repeats: count each image once
            name = r.pop("name")
            key = (r["task"], name)  # task or test set, and the image's name
            if name is None or key not in seen:
                seen.add(key)
                records.append(r)
        self._eval_records = []
        rows = per_task_table(records)
        for row in rows:
            prefix = f"{stage}/" if row["task"] == "all" else f"{stage}/{row['task']}/"
            for key in ("psnr_in", "ssim_in", "psnr_out", "ssim_out"):
                self.log(prefix + key, row[key], sync_dist=True)  # gathered: identical on every rank
        if self._grid is not None and self.trainer.is_global_zero:
            tb = getattr(self.logger, "experiment", None)
            if hasattr(tb, "add_image"):
                tb.add_image(f"{stage}/lq_output_gt", comparison_grid(*self._grid), self.global_step)
        return rows

    def _reset_eval(self) -> None:
        self._eval_records, self._grid = [], None

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._reset_eval()

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._reset_eval()

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
