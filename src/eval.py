"""Evaluate a trained model on benchmark sets: ``python -m src.eval experiment=... ckpt_path=...``.

For each configured set (``testsets``: the papers' test sets whose manifests exist, else the built-in held-out
images) the model restores every image inside ``trainer.test`` (CPU, a GPU, several GPUs with DDP: whatever the
``trainer`` config gives) and each image is scored with the configured metrics; each set gets
``<run>/<set>/metrics.{csv,md}`` (the paper's numbers beside ours), ``per_image.csv`` and LQ | restored | GT grids,
the run ``report.md`` / ``report.html``. The work is :mod:`src.evaluation.evaluator`'s; this is the command.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from src.evaluation.evaluator import evaluate
from src.utils.atomic import check_writable_folder, one_line
from src.utils.checkpoints import refused_model_file


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """``evaluate``; a refused, damaged or missing input (model file, test set, ``paths.output_dir``) is one line
    and exit status 2, a disk error one line and exit status 1."""
    try:
        check_writable_folder(cfg.paths.output_dir, "paths.output_dir")
        evaluate(cfg)
    except Exception as e:
        refused = refused_model_file(e) or (e if isinstance(e, (ValueError, KeyError)) else None)
        if refused is None and not isinstance(e, OSError):
            raise
        reworded = e.__cause__ is None and e.__suppress_context__  # raised `from None` with a better message
        print(f"error: {one_line(e if reworded or refused is None else refused)}", file=sys.stderr)
        raise SystemExit(2 if refused is not None else 1) from None


if __name__ == "__main__":
    main()
