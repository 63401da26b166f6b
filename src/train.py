"""Train (and then evaluate) a model: ``python -m src.train experiment=diffuir_l [overrides]``."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import hydra
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from src.reporting.tables import to_markdown
from src.utils.atomic import one_line
from src.utils.checkpoints import refused_model_file
from src.utils.instantiate import build

# conf/hydra/launcher/submitit_*.yaml write out the plugin's fields; Hydra also checks them against the plugin's
# schema of the same name, and says that this check is deprecated
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_\w+' is validated against ConfigStore schema")

# what to do about a mandatory (`???`) config value left unset
MISSING_HINTS = {
    "model.stage1_ckpt": (
        "Diff-Restorer stage 2 takes P_D from stage 1's degradation branch B_d (paper §III-D), and its test scores "
        "the whole pipeline: train stage 1 first (`python -m src.train experiment=diff_restorer_stage1`, or "
        "experiment=diff_restorer_stage1_tiny) and pass model.stage1_ckpt=<that run>/checkpoints/last.ckpt; "
        "model.stage1_ckpt=null model.eval_mode=reconstruction trains a B_d of its own instead (not the paper's "
        "pipeline; the test then scores reconstructions of E(I_HQ), not restorations)"),
}


class UsageError(ValueError):
    """A run that cannot start as configured (exit status 2, the message says what to change)."""


def check_required(cfg: DictConfig) -> None:
    """Every mandatory value (``???``) is set; else one error naming each key and what to give it."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise UsageError("missing required config value(s):\n" + "\n".join(
            f"  {k}: {MISSING_HINTS.get(k, 'set it on the command line, e.g. ' + k + '=...')}" for k in missing))


def check_test_sets(datamodule) -> None:
    """Before the fit: every test-set manifest exists and its rows' files are there (``data.check``), so a missing
    one fails in seconds, not after training. DataModules without manifests (built-in data) need nothing."""
    hp = getattr(datamodule, "hparams", {})
    testsets = dict(hp.get("testsets") or {})
    if testsets and hasattr(datamodule, "manifest_path"):
        missing = {name: datamodule.manifest_path(m) for name, m in testsets.items()
                   if not datamodule.manifest_path(m).is_file()}
        if missing:
            raise UsageError(
                "test-set manifest(s) not found (checked before training):\n"
                + "\n".join(f"  data.testsets.{n}: {p}" for n, p in missing.items())
                + "\nbuild them with `python -m src.data.manifests build <dataset> --root $UIR_DATA/<folder>` "
                "(data_manifests/README.md), choose other sets (data/testsets=...), or run with test=false")
    datamodule.setup("test")  # reads and checks the test rows now (manifest DataModules keep them for the test)


def train(cfg: DictConfig) -> dict:
    """Fit, then test the final model; returns the test table and the paths of what was written."""
    started = time.perf_counter()
    check_required(cfg)
    datamodule, model, trainer = build(cfg)
    if cfg.get("test", True):
        check_test_sets(datamodule)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=False)
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    result: dict = {"output_dir": out_dir, "train_seconds": time.perf_counter() - started,
                    "global_step": trainer.global_step}
    if cfg.get("test", True):
        trainer.test(model, datamodule=datamodule, verbose=False)
        if trainer.is_global_zero:
            what = getattr(model, "test_description", "input vs restored")
            result["paths"] = model.save_test_report(out_dir, title=f"{cfg.task_name}: held-out test set, {what}")
            result["rows"] = model.test_rows
            rank_zero_info("\n" + to_markdown(model.test_rows, f"{cfg.task_name}: {what} (PSNR/SSIM on Y)"))
    ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or "(none)"
    rank_zero_info(f"Outputs in {out_dir}\n  checkpoint: {ckpt}\n  tensorboard: tensorboard --logdir {out_dir}"
                   + "".join(f"\n  {k}: {v}" for k, v in result.get("paths", {}).items())
                   + f"\n  wall time: {time.perf_counter() - started:.0f} s")
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except (FloatingPointError, UsageError) as e:
        if _in_multirun():
            raise  # Hydra records the job as failed and the sweep goes on (its row in summary.md says why)
        if isinstance(e, UsageError):
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        raise SystemExit(f"training stopped: {e}") from None  # NaN/inf: FaultTolerance logged the last good ckpt
    except Exception as e:  # a refused / damaged model file (init_from_official, ckpt_path, a stage checkpoint)
        refused = refused_model_file(e)
        if refused is None or _in_multirun():
            raise
        print(f"error: {one_line(refused)}", file=sys.stderr)
        raise SystemExit(2) from None


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


if __name__ == "__main__":
    main()
