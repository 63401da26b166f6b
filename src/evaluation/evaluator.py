"""The benchmark evaluator behind ``python -m src.eval experiment=... ckpt_path=...`` (:func:`evaluate`).

For each configured set (``testsets``: the papers' test sets whose manifests exist, else the built-in held-out
images) the model restores every image inside ``trainer.test`` — so the run uses whatever the ``trainer`` config
gives: CPU, a GPU, several GPUs with DDP — and :class:`Evaluator`, a small LightningModule wrapping the model,
scores each image with the configured metrics (:mod:`src.metrics.registry`) as it goes. Per-image records are
gathered from all ranks and de-duplicated (the distributed sampler pads the last batch with repeats); rank 0
then computes FID on the saved images, writes for each set ``<run>/<set>/metrics.{csv,md}`` (our numbers, the
paper's beside them), ``per_image.csv`` and ``grid_<task>.png`` (LQ | restored | GT), then ``report.md`` /
``report.html`` over all sets, and logs the scalars and grids to TensorBoard.

Metrics needing weights read them from ``metric_weights_dir`` only; a missing file turns the metric into
"not computed (needs <file> in <folder>)" and the run goes on (:mod:`src.metrics.perceptual`).

The model is loaded by the suite's one loader (:func:`src.utils.checkpoints.load_restoration_model`) and used
through its declared attributes only (``restore``; optional ``paper_method``, ``eval_hist_eq_tasks``), so this
module imports no model package.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_object, instantiate
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from src.baselines import baseline_scores
from src.metrics.fidelity import to_uint8
from src.metrics.perceptual import MetricUnavailable, check_weights, fid_between_folders
from src.metrics.registry import METRICS, MetricSuite
from src.reporting.baseline_columns import add_baseline_columns, baseline_notes
from src.reporting.grids import comparison_grid, save_comparison_grid
from src.reporting.paper_tables import paper_values
from src.reporting.report import (
    SetResult,
    add_paper_columns,
    aggregate,
    set_table_markdown,
    write_per_image_csv,
    write_report,
    write_set_table_csv,
)
from src.tasks import task_name
from src.utils.checkpoints import is_export, load_restoration_model
from src.utils.distributed import gather_objects
from src.utils.instantiate import instantiate_dict, set_threads

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- the checkpoint
def resolve_ckpt_path(cfg: DictConfig) -> Path:
    """``cfg.ckpt_path`` as an existing file, or an error saying what to pass and where checkpoints are."""
    hint = ("pass ckpt_path=<file>: a checkpoint written by `python -m src.train` "
            "(<run dir>/checkpoints/last.ckpt; `make demo` writes logs/diffuir_t_demo/runs/<time>/checkpoints/"
            "last.ckpt) or an official DiffUIR release (model-300.pt)")
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        found = sorted(Path(cfg.paths.log_dir).glob("*/runs/*/checkpoints/last.ckpt"))[-3:]
        listed = "".join(f"\n  {p}" for p in found)
        raise ValueError(f"ckpt_path is required: {hint}" + (f"\nnewest found under {cfg.paths.log_dir}:{listed}"
                                                             if found else ""))
    path = Path(str(cfg.ckpt_path)).expanduser()
    if not (path.is_file() or is_export(path)):  # a file, or an export folder of src.export
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"ckpt_path={path} {what} (resolved: {path.resolve()}): {hint}")
    return path


def load_model(cfg: DictConfig, path: Path) -> L.LightningModule:
    """The model of checkpoint ``path``, in eval mode, with a ``restore(lq)`` method, through the suite's one loader
    (:func:`~src.utils.checkpoints.load_restoration_model`): suite checkpoints and export folders are rebuilt from
    the config they carry; files that carry none (older Lightning checkpoints, official DiffUIR releases) from the
    run's ``cfg.model``."""
    model = load_restoration_model(path, run_config=OmegaConf.to_container(cfg.model, resolve=True),
                                   run_name=f"experiment={cfg.get('task_name')}")
    if not callable(getattr(model, "restore", None)):
        raise TypeError(f"{type(model).__name__} has no restore(lq) method: src.eval cannot run it")
    return model.eval()


def own_paper_method(model) -> str | None:
    """The paper row the model declares (``paper_method``: DiffUIR's Table 1 row of its size), else None."""
    return getattr(model, "paper_method", None)


# ---------------------------------------------------------------------------------------------- the test sets
class IndexedDataset(Dataset):
    """Adds each sample's position (``index``), so records gathered from DDP ranks can be de-duplicated."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": index}


@dataclass
class TestSet:
    name: str
    loader: DataLoader
    tasks: list[str]                   # task of each sample, by index
    paper: list[dict] = field(default_factory=list)
    note: str = ""
    title: str = ""


def _builtin_set(cfg: DictConfig) -> TestSet:
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    base = datamodule.test_dataloader()
    dataset = base.dataset
    if hasattr(dataset, "pairs"):  # BuiltinEvalDataset: (image, task) per sample, no need to load them
        tasks = [task for _, task in dataset.pairs]
    else:
        tasks = [task_name(dataset[i]["task"]) for i in range(len(dataset))]
    loader = DataLoader(IndexedDataset(dataset), batch_size=base.batch_size, num_workers=base.num_workers,
                        collate_fn=base.collate_fn)
    return TestSet("builtin", loader, tasks, list(cfg.get("paper") or []),
                   note="The built-in held-out images, synthetically degraded: not the papers' test sets, so the "
                        "paper columns are for orientation only.",
                   title=f"builtin: held-out scikit-image photos, synthetic degradations ({len(tasks)} images)")


def _manifest_set(cfg: DictConfig, name: str, spec: DictConfig) -> TestSet:
    from src.data.datasets import EvalDataset
    from src.data.manifests import ManifestError, load_manifest

    manifest = Path(cfg.manifest_dir) / spec.manifest
    data_root = Path(cfg.paths.data_dir)
    try:
        rows = load_manifest(manifest, data_root, level="exists")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"test set {name}: {e}") from e
    except ManifestError as e:
        raise FileNotFoundError(f"test set {name}: files of {manifest} are missing under the data root {data_root} "
                                f"(paths.data_dir, from the UIR_DATA environment variable); set UIR_DATA to the "
                                f"folder the manifest was built against.\n{e}") from e
    dataset = EvalDataset(rows, data_root, hist_eq_tasks=hist_eq_tasks(cfg))
    loader = DataLoader(IndexedDataset(dataset), batch_size=int(cfg.eval_batch_size),
                        num_workers=int(cfg.num_workers), persistent_workers=False)
    return TestSet(name, loader, [r.task for r in rows], list(spec.get("paper") or cfg.get("paper") or []),
                   note=spec.get("note") or "", title=f"{name} ({spec.manifest}, {len(rows)} images)")


def hist_eq_tasks(cfg: DictConfig) -> list[str]:
    """``cfg.hist_eq_tasks``; ``auto``: what the configured model class declares (``eval_hist_eq_tasks``; DiffUIR:
    ``[low_light]``), read from the class before any model is built."""
    value = cfg.get("hist_eq_tasks", "auto")
    if value == "auto":
        name = str(cfg.model.get("_target_"))
        try:
            target = get_object(name)
        except Exception as e:  # Hydra's ImportError / ValueError for a name it cannot find
            raise ValueError(f"hist_eq_tasks=auto reads the model class, and model._target_={name} cannot be "
                             f"imported ({e}); set hist_eq_tasks=[...] explicitly") from None
        model_class = getattr(target, "__self__", target)  # a factory classmethod: its class
        return list(getattr(model_class, "eval_hist_eq_tasks", ()))
    return list(value or [])


def build_testsets(cfg: DictConfig) -> list[TestSet]:
    """The sets of ``cfg.testsets`` (see conf/eval.yaml): ``auto``, or a list of names (``builtin`` included)."""
    sets_cfg = {n: s for g in (cfg.get("benchmark_groups") or {}).values() for n, s in g.testsets.items()}
    wanted = cfg.get("testsets", "auto")
    if wanted == "auto" or wanted is None:
        names = [n for n, s in sets_cfg.items() if (Path(cfg.manifest_dir) / s.manifest).is_file()]
        if not names:
            rank_zero_info(f"No benchmark manifest under {cfg.manifest_dir}: evaluating the built-in held-out set "
                           "(build manifests with `python -m src.data.manifests build ...` to run the real sets).")
            names = ["builtin"]
    else:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
    unknown = [n for n in names if n != "builtin" and n not in sets_cfg]
    if unknown:
        raise ValueError(f"unknown test set(s) {unknown}: known are builtin and {list(sets_cfg)} (conf/data/testsets/)")
    return [_builtin_set(cfg) if n == "builtin" else _manifest_set(cfg, n, sets_cfg[n]) for n in names]


# ---------------------------------------------------------------------------------------------- the evaluator
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]+", "_", str(name).replace("/", "__")) or "image"


class Evaluator(L.LightningModule):
    """Runs ``restorer.restore`` on every test batch and scores the result (``trainer.test`` drives it).

    Per-image records go to :attr:`records` (gathered over ranks, de-duplicated by set and index); restored images
    (and, for FID, the references) are saved as PNG under ``out_dir/<set>/``; the first ``grid_images`` images of
    each (set, task) are kept for the LQ | restored | GT grids.
    """

    def __init__(self, restorer: L.LightningModule, sets: list[TestSet], metrics: list[str], weights_dir: str | Path,
                 out_dir: str | Path, metric_device: str | None = None, save_images: bool = True,
                 save_references: bool = False, grid_images: int = 4, baselines: bool = True):
        super().__init__()
        self.restorer = restorer
        self.sets, self.metric_names, self.weights_dir = sets, list(metrics), Path(weights_dir)
        self.out_dir, self.metric_device = Path(out_dir), metric_device
        self.save_images, self.save_references, self.grid_images = save_images, save_references, grid_images
        self.baselines = baselines  # score the best classical baseline per image (src.baselines) beside the model
        self.suite: MetricSuite | None = None
        self.records: list[dict] = []
        self.grids: dict[tuple[str, str], list[tuple]] = {}
        self.unavailable: dict[str, MetricUnavailable] = {}

    def on_test_start(self) -> None:
        self.suite = MetricSuite(self.metric_names, self.weights_dir, self.metric_device or self.device)
        self.records, self.grids = [], {}

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        test_set = self.sets[dataloader_idx]
        lq = batch["lq"]
        has_gt = batch.get("has_gt")
        gt = batch.get("gt") if has_gt is None or bool(torch.as_tensor(has_gt).all()) else None
        out = self.restorer.restore(lq)
        scores = self.suite.score_batch(out, gt, lq)
        names = batch.get("name")
        for i, score in enumerate(scores):
            index = int(batch["index"][i])
            task = test_set.tasks[index]
            name = _safe(names[i] if names is not None else f"{index:06d}")
            self.records.append({"set": test_set.name, "index": index, "name": name, "task": task, **score,
                                 **(baseline_scores(task, lq[i], gt[i]) if self.baselines and gt is not None else {})})
            if self.save_images:
                self._save(out[i], self.out_dir / test_set.name / "restored" / task / f"{name}.png")
                if self.save_references and gt is not None:
                    self._save(gt[i], self.out_dir / test_set.name / "gt" / task / f"{name}.png")
            kept = self.grids.setdefault((test_set.name, task), [])
            if len(kept) < self.grid_images:
                kept.append(tuple(t[i].detach().cpu() for t in (lq, out, gt) if t is not None))

    @staticmethod
    def _save(img: torch.Tensor, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_uint8(img)).save(path)  # the same 8-bit rounding the metrics used

    def on_test_epoch_end(self) -> None:
        seen, records = set(), []
        for r in gather_objects(self.records):
            if (r["set"], r["index"]) not in seen:
                seen.add((r["set"], r["index"]))
                records.append(r)
        self.records = sorted(records, key=lambda r: (r["set"], r["index"]))
        for part in gather_objects([self.suite.unavailable]):
            for name, err in part.items():
                self.unavailable.setdefault(name, err)


# ---------------------------------------------------------------------------------------------- tables
def _paper_lookup(sources: list[dict], own_method: str | None):
    def lookup(task: str, metric: str):
        for src in sources:
            method = src.get("method", "auto")
            method = own_method if method == "auto" else method
            if method is None:
                continue
            found = paper_values(paper=src.get("paper"), table=str(src.get("table")) if src.get("table") else None,
                                 method=method, metric_key=metric, dataset=src.get("dataset"),
                                 task=None if src.get("dataset") else task)
            if found:
                return found[0]
        return None

    return lookup


def _add_note(row: dict, note: str) -> None:
    row["notes"] = f"{row['notes']}; {note}" if row.get("notes") else note


def _fid(test_set: TestSet, rows: list[dict], out_dir: Path, cfg: DictConfig, device) -> None:
    """FID per task (and over the set) from the saved images; a row's ``notes`` say why its FID is empty."""
    minimum = int(cfg.get("fid_min_images", 10))
    for row in rows:
        sub = "" if row["task"] == "all" else row["task"]
        restored, reference = out_dir / test_set.name / "restored" / sub, out_dir / test_set.name / "gt" / sub
        if not reference.is_dir():
            continue  # no ground truth: FID has nothing to compare with
        if row["n"] < minimum:
            _add_note(row, f"FID not computed: {row['n']} images < fid_min_images={minimum}")
            continue
        try:
            row["fid"] = fid_between_folders(restored, reference, cfg.metric_weights_dir, device=device,
                                             num_workers=0, verbose=True)
        except MetricUnavailable as e:
            _add_note(row, f"FID {e.cell()}")


def _log_to_loggers(trainer: L.Trainer, result: SetResult, grids: dict[str, torch.Tensor]) -> None:
    scalars = {f"eval/{result.name}/{row['task']}/{m}": float(row[m]) for row in result.rows
               for m in result.metrics if isinstance(row.get(m), float)}
    for logger in trainer.loggers:
        logger.log_metrics(scalars, step=0)
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            for label, grid in grids.items():
                experiment.add_image(f"eval/{result.name}/{label}", grid, 0)


def evaluate(cfg: DictConfig) -> dict:
    """Run the evaluation; returns ``{"output_dir", "results": [SetResult], "paths": {...}, "unavailable"}``."""
    started = time.perf_counter()
    ckpt_path = resolve_ckpt_path(cfg)
    set_threads(cfg.get("num_threads"))
    L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=False)

    metrics = list(cfg.metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown} in `metrics`; known: {list(METRICS)}")
    sets = build_testsets(cfg)  # before the checkpoint: a missing dataset is reported without loading a model
    restorer = load_model(cfg, ckpt_path)
    own_method = own_paper_method(restorer) if cfg.get("paper_method", "auto") == "auto" else cfg.get("paper_method")
    for name in metrics:  # say early what will not be computed
        if METRICS[name].needs_weights:
            try:
                check_weights(name, cfg.metric_weights_dir)
            except MetricUnavailable as e:
                rank_zero_info(e.explain())
    fid_wanted = "fid" in metrics and not _missing(lambda: check_weights("fid", cfg.metric_weights_dir))

    evaluator = Evaluator(restorer, sets, metrics, cfg.metric_weights_dir, out_dir, cfg.get("metric_device"),
                          save_images=bool(cfg.save_images) or fid_wanted, save_references=fid_wanted,
                          grid_images=int(cfg.grid_images), baselines=bool(cfg.get("baselines", True)))
    trainer = instantiate(cfg.trainer, callbacks=instantiate_dict(cfg.get("callbacks")),
                          logger=instantiate_dict(cfg.get("logger")) or False)
    # DDP pads the last batches with repeated samples; Evaluator drops the repeats, so Lightning's warning is moot
    warnings.filterwarnings("ignore", message=r".*`DistributedSampler` with the dataloaders.*")
    trainer.test(evaluator, dataloaders=[s.loader for s in sets], verbose=False)
    trainer.strategy.barrier()
    result: dict = {"output_dir": out_dir, "results": [], "paths": {}, "unavailable": evaluator.unavailable}
    if not trainer.is_global_zero:
        return result

    unavailable = dict(evaluator.unavailable)
    per_image = [m for m in metrics if METRICS[m].kind != "set"]
    device = cfg.get("metric_device") or evaluator.device
    for test_set in sets:
        records = [r for r in evaluator.records if r["set"] == test_set.name]
        rows = add_baseline_columns(aggregate(records, per_image), records, model_key="psnr")
        notes = ([test_set.note] if test_set.note else []) + baseline_notes(rows)
        if fid_wanted:
            _fid(test_set, rows, out_dir, cfg, device)
        res = SetResult(test_set.name, rows, metrics, notes=notes, title=test_set.title or test_set.name)
        res.paper_metrics = add_paper_columns(rows, metrics, _paper_lookup(test_set.paper, own_method))
        set_dir = out_dir / test_set.name
        grids = {}
        for (set_name, task), kept in evaluator.grids.items():
            if set_name == test_set.name and kept:
                width = min(len(k) for k in kept)
                columns = [torch.stack([k[c] for k in kept]) for c in range(width)]
                res.grids[task] = save_comparison_grid(set_dir / f"grid_{_safe(task)}.png", *columns)
                grids[task] = comparison_grid(*columns)
        paths = {"csv": write_set_table_csv(res, unavailable, set_dir / "metrics.csv"),
                 "per_image": write_per_image_csv(records, per_image, set_dir / "per_image.csv", unavailable)}
        paths["markdown"] = set_dir / "metrics.md"
        paths["markdown"].write_text(set_table_markdown(res, unavailable))
        result["paths"][test_set.name] = paths
        result["results"].append(res)
        _log_to_loggers(trainer, res, grids)
        rank_zero_info("\n" + set_table_markdown(res, unavailable))
    meta = {"checkpoint": str(ckpt_path), "model": type(restorer).__name__,
            "paper row": own_method or "(not a paper model size)", "sets": ", ".join(s.name for s in sets),
            "metrics": ", ".join(metrics), "metric weights": str(Path(cfg.metric_weights_dir).expanduser()),
            "images": "8-bit (outputs clamped to [0, 1] and rounded) before every metric",
            "LQ preprocessing": (f"histogram equalisation of {hist_eq_tasks(cfg)} inputs of "
                                 "manifest sets (the model sees it; psnr_in / LOE use it)"
                                 if any(s.name != "builtin" for s in sets) else "none"),
            "wall time": f"{time.perf_counter() - started:.0f} s"}
    result["paths"]["report"] = write_report(out_dir, f"{cfg.task_name}: evaluation", result["results"], unavailable,
                                             meta)
    result["unavailable"] = unavailable
    rank_zero_info(f"Outputs in {out_dir}\n  report: {result['paths']['report']['report_html']} (open it in a browser)"
                   f"\n  tensorboard: tensorboard --logdir {out_dir}"
                   f"\n  wall time: {time.perf_counter() - started:.0f} s")
    return result


def _missing(check) -> bool:
    try:
        check()
        return False
    except MetricUnavailable:
        return True
