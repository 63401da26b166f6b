"""Evaluate a trained model on benchmark sets: ``python -m src.eval experiment=... ckpt_path=...``.

For each configured set (``testsets``: the papers' test sets whose manifests exist, else the built-in held-out
images) the model restores every image inside ``trainer.test`` (CPU, a GPU, several GPUs with DDP: whatever the
``trainer`` config gives) and each image is scored with the configured metrics; each set gets
``<run>/<set>/metrics.{csv,md}`` (the paper's numbers beside ours), ``per_image.csv`` and LQ | restored | GT grids,
the run ``report.md`` / ``report.html``. The work is :mod:`src.evaluation.evaluator`'s; this is the command.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from src.evaluation.evaluator import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
