"""Train (and then evaluate) a model: ``python -m src.train experiment=diffuir_l [overrides]``."""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from src.reporting.tables import to_markdown
from src.utils.instantiate import build


def train(cfg: DictConfig) -> dict:
    """Fit, then test the final model; returns the test table and the paths of what was written."""
    started = time.perf_counter()
    datamodule, model, trainer = build(cfg)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=False)
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    result: dict = {"output_dir": out_dir, "train_seconds": time.perf_counter() - started}
    if cfg.get("test", True):
        trainer.test(model, datamodule=datamodule, verbose=False)
        if trainer.is_global_zero:
            result["paths"] = model.save_test_report(out_dir, title=f"{cfg.task_name}: held-out test set")
            result["rows"] = model.test_rows
            rank_zero_info("\n" + to_markdown(model.test_rows, f"{cfg.task_name}: input vs restored (PSNR/SSIM on Y)"))
    ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or "(none)"
    rank_zero_info(f"Outputs in {out_dir}\n  checkpoint: {ckpt}\n  tensorboard: tensorboard --logdir {out_dir}"
                   + "".join(f"\n  {k}: {v}" for k, v in result.get("paths", {}).items())
                   + f"\n  wall time: {time.perf_counter() - started:.0f} s")
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except FloatingPointError as e:  # NaN/inf: FaultTolerance has logged where the last good checkpoint is
        raise SystemExit(f"training stopped: {e}") from None


if __name__ == "__main__":
    main()
