"""Train (and then evaluate) a model: ``python -m src.train experiment=diffuir_l [overrides]``."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import hydra
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf, open_dict

from src.reporting.sweep_summary import TASKS_FILE, per_task_of_sets
from src.reporting.tables import to_markdown, write_csv
from src.utils.atomic import one_line
from src.utils.checkpoints import refused_model_file
from src.utils.instantiate import build
from src.utils.loggers import config_params

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


def _build_command(manifest: str) -> str:
    """The command that writes ``manifest`` (``<builder>_<split>.csv``, :mod:`src.data.manifests`)."""
    from src.data.builders import BUILDERS

    name = Path(manifest).name
    builders = sorted((b for b in BUILDERS if name.startswith(b + "_")), key=len)
    builder = builders[-1] if builders else "<dataset>"
    return f"python -m src.data.manifests build {builder} --root $UIR_DATA/<its folder>"


def check_manifests(datamodule, train: bool, test: bool) -> None:
    """Before anything is built or trained: the training manifests (``train``) and the test-set manifests
    (``test``) of a manifest DataModule exist, so a missing one fails in seconds with the command that builds it;
    with ``test`` the test rows' files are checked too (``data.check``). The built-in data needs nothing."""
    if not hasattr(datamodule, "manifest_path"):
        return
    hp = getattr(datamodule, "hparams", {})
    wanted = {f"data.train_manifests[{i}]": m for i, m in enumerate(hp.get("train_manifests") or [])} if train else {}
    if test:
        wanted.update({f"data.testsets.{n}": m for n, m in datamodule.testset_manifests.items()})
    paths = {key: datamodule.manifest_path(m) for key, m in wanted.items()}
    missing = {key: p for key, p in paths.items() if not p.is_file()}
    if missing:
        raise UsageError(
            "dataset manifest(s) not found (checked before training):\n"
            + "\n".join(f"  {k}: {p}\n    build it: {_build_command(p.name)}" for k, p in missing.items())
            + "\n(data_manifests/README.md says where each dataset is downloaded from). Or train on the built-in "
            "photos: data=builtin" + ("; choose other test sets (data/testsets=...) or run with test=false"
                                     if test else ""))
    if test:
        datamodule.setup("test")  # reads and checks the test rows now (manifest DataModules keep them for the test)


def _devices(trainer_cfg) -> int:
    """Processes per node that ``trainer.devices`` asks for (an int, a list of ids, "auto"/-1: every GPU or 1)."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices
    import torch

    gpu = str(trainer_cfg.get("accelerator", "auto")) in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return max(1, torch.cuda.device_count()) if gpu else 1


def effective_batch(cfg: DictConfig) -> dict:
    """Samples per optimizer step: data.batch_size × devices × num_nodes × accumulate_grad_batches."""
    parts = {"batch_size": int(cfg.data.get("batch_size", 1)), "devices": _devices(cfg.trainer),
             "num_nodes": int(cfg.trainer.get("num_nodes", 1) or 1),
             "accumulate": int(cfg.trainer.get("accumulate_grad_batches", 1) or 1)}
    parts["effective"] = parts["batch_size"] * parts["devices"] * parts["num_nodes"] * parts["accumulate"]
    return parts


def scale_learning_rate(cfg: DictConfig) -> str:
    """Apply ``lr_scaling`` (``{reference_batch, rule}``) to ``model.optimizer.lr`` in place; returns the line
    printed at start (the effective batch, and the learning rate with where it came from)."""
    b = effective_batch(cfg)
    line = (f"effective batch {b['effective']} = {b['batch_size']} per device x {b['devices']} device(s) x "
            f"{b['num_nodes']} node(s) x accumulation {b['accumulate']}")
    lr = OmegaConf.select(cfg, "model.optimizer.lr")
    scaling = cfg.get("lr_scaling")
    if lr is None or not scaling or str(scaling.get("rule", "linear")) == "none":
        return line + (f"; learning rate {lr:g}" if lr is not None else "")
    rule, reference = str(scaling.get("rule", "linear")), int(scaling.reference_batch)
    if rule not in ("linear", "sqrt") or reference < 1:
        raise UsageError(f"lr_scaling: rule={rule!r}, reference_batch={reference}: expected rule linear, sqrt or "
                         "none and a positive reference_batch")
    ratio = b["effective"] / reference
    factor = ratio if rule == "linear" else ratio ** 0.5
    if factor != 1:
        with open_dict(cfg):
            cfg.model.optimizer.lr = float(lr) * factor
    recipe = f" (recipe {scaling.recipe})" if scaling.get("recipe") else ""
    return (line + f"; learning rate {cfg.model.optimizer.lr:.4g} = {float(lr):g} for batch {reference}{recipe}"
            + (f" x {factor:.4g} ({rule} scaling)" if factor != 1 else ""))


# files a model reads, stored in its checkpoint
PATH_KEYS = ("model.stage1_ckpt", "model.init_from_official", "model.init_from")


def resolve_model_paths(cfg: DictConfig) -> None:
    """Make the model's file paths absolute (in place) before the model config is built and stored in checkpoints:
    a stage-2 checkpoint then names its stage-1 checkpoint wherever it is loaded from, not only from the folder the
    training was started in."""
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if value and not Path(str(value)).expanduser().is_absolute():
            OmegaConf.update(cfg, key, str(Path(str(value)).expanduser().resolve()), merge=False)


def resume_path(cfg: DictConfig) -> str | None:
    """``ckpt_path``, or with ``auto_resume`` the run folder's last checkpoint when there is one: a job that SLURM
    requeued (submitit reruns it with the same config, so the same folder) goes on from where it stopped."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    if not cfg.get("auto_resume"):
        return None
    folder = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath") or Path(cfg.paths.output_dir) / "checkpoints"
    last = Path(folder) / "last.ckpt"
    if last.is_file():
        rank_zero_info(f"auto_resume: resuming from {last}")
        return str(last)
    return None


def tasks_of_test_sets(datamodule) -> dict[str, str]:
    """``{test set (row source): task}`` of a manifest DataModule's test rows, for sets of one task; {} otherwise
    (the built-in data's groups are tasks already)."""
    rows = getattr(getattr(datamodule, "test_set", None), "rows", None) or []
    tasks: dict[str, set] = {}
    for r in rows:
        tasks.setdefault(r.source, set()).add(r.task)
    return {s: next(iter(ts)) for s, ts in tasks.items() if len(ts) == 1}


def train(cfg: DictConfig) -> dict:
    """Fit, then test the final model; returns the test table and the paths of what was written."""
    started = time.perf_counter()
    check_required(cfg)
    rank_zero_info(scale_learning_rate(cfg))
    resolve_model_paths(cfg)
    datamodule, model, trainer = build(cfg)
    check_manifests(datamodule, train=bool(cfg.get("train", True)), test=bool(cfg.get("test", True)))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=False)
    for run_logger in trainer.loggers:  # the whole config, not only the module's arguments (rank 0 writes)
        run_logger.log_hyperparams(config_params(cfg))
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_path(cfg))
    result: dict = {"output_dir": out_dir, "train_seconds": time.perf_counter() - started,
                    "global_step": trainer.global_step}
    if cfg.get("test", True):
        trainer.test(model, datamodule=datamodule, verbose=False)
        if trainer.is_global_zero:
            what = getattr(model, "test_description", "input vs restored")
            result["paths"] = model.save_test_report(out_dir, title=f"{cfg.task_name}: held-out test set, {what}")
            set_tasks = tasks_of_test_sets(datamodule)
            if set_tasks:  # the papers' per-task columns (DiffUIR: rain = mean of its 5 sets)
                result["paths"]["tasks_csv"] = write_csv(per_task_of_sets(model.test_rows, set_tasks),
                                                         out_dir / TASKS_FILE)
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
