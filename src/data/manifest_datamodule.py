"""LightningDataModules over dataset manifests (``data_manifests/``), one per paper's balancing recipe.

* :class:`DiffUIRDataModule` (``data=diffuir_tasks``): every batch has a fixed task composition (0.4 haze, 0.1
  low-light, 0.2 rain, 0.2 snow, 0.1 blur: 4 / 1 / 2 / 2 / 1 of a batch of 10), random 256² crops, flips, histogram
  equalisation of low-light inputs.
* :class:`DiffRestorerDataModule` (``data=eight_degradations``): each of the eight tasks resampled to N samples per
  epoch (10K; larger pools subsampled, smaller ones oversampled with augmentation), images resized to 512².

Both read their manifests in ``setup()`` and check them (``check``: ``exists`` by default, ``header`` / ``full``
open every image; see :func:`src.data.manifest_format.check_rows`), so a broken manifest fails at start-up with every
bad row listed (``on_error: skip`` drops them instead); a sample listed twice across the training manifests is an
error too. During training an unreadable image stops the run with an error naming the file and the manifest row,
unless ``on_bad_sample: skip``: then it is logged and replaced by another sample of the same task, and the number of
samples replaced is reported at the end of every epoch (the validation images are decoded at set-up in that mode, so
a bad one is named before training starts). Batches follow the suite's contract (``lq``, ``gt``, ``task``;
evaluation adds ``name``, ``source`` and ``has_gt``, see :mod:`src.data.datasets`). Training samplers shard by
rank (DDP: each rank its own disjoint part of every epoch) and seed every sample, so augmentation does not depend
on the worker count; evaluation is sharded without padding (each sample evaluated once).
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from src.data.balancing import BalancedTaskSampler, ShardSampler, TaskCompositionSampler, dist_info, task_pools
from src.data.balancing import weights_vector as _weights_vector
from src.data.datasets import (
    ON_BAD_SAMPLE,
    SKIPPED_KEY,
    DiffRestorerTrainDataset,
    DiffUIRTrainDataset,
    EvalDataset,
    ManifestDataset,
    OversampleAugment,
    SynthConfig,
    first_per_source,
    worker_init_fn,
)
from src.data.manifest_format import (
    DEFAULT_MANIFEST_DIR,
    Row,
    _raise_or_skip,
    check_rows,
    duplicate_problems,
    load_manifest,
    task_counts,
)
from src.tasks import TASKS

log = logging.getLogger(__name__)

DIFFUIR_TASK_WEIGHTS = {"haze": 0.4, "low_light": 0.1, "rain": 0.2, "snow": 0.2, "blur": 0.1}


class SkipReportingLoader(DataLoader):
    """The training loader of ``on_bad_sample: skip``: removes the per-sample ``skipped`` field from each batch (the
    model sees the usual batch contract) and logs how many samples of the epoch were replaced when the epoch's
    batches end (or the iteration stops early). ``epoch_skipped`` keeps ``(epoch, count)`` of every epoch."""

    @property
    def epoch_skipped(self) -> list[tuple[int | None, int]]:
        return self.__dict__.setdefault("_epoch_skipped", [])

    def __iter__(self):
        epoch, total, complete = getattr(self.sampler, "epoch", None), 0, False
        try:
            for batch in super().__iter__():
                if isinstance(batch, dict) and SKIPPED_KEY in batch:
                    total += int(batch.pop(SKIPPED_KEY).sum())
                yield batch
            complete = True
        finally:
            self.epoch_skipped.append((epoch, total))
            rank, _ = dist_info()
            log.log(logging.WARNING if total else logging.INFO,
                    "epoch %s%s: %d training sample(s) could not be read and were replaced by another sample of the "
                    "same task (data.on_bad_sample=skip; the files are named in the warnings above)%s", epoch,
                    f" (rank {rank})" if rank else "", total, "" if complete else " [the epoch stopped early]")


class ManifestDataModule(L.LightningDataModule, abc.ABC):
    """Shared part: manifests → checked rows → datasets and sharded loaders. Subclasses define the training set.

    Args:
        data_root: the folder manifest paths are relative to (``${paths.data_dir}``).
        train_manifests: training manifests (file names are looked up in ``manifest_dir``).
        testsets: the evaluation sets, ``{name: manifest}`` or ``{name: {manifest, tasks, ...}}`` (the registry in
            the ``data/testsets`` config group); a set whose ``tasks`` are not all trained is left out.
        val_sets: names from ``testsets`` used for validation (default: all), each cut to ``val_limit_per_set``.
        tasks: the trained tasks (default: all of :data:`TASKS`); test sets of other tasks are left out.
        batch_size: training samples per batch and rank.
        train_samples: training samples per epoch over all ranks (see the subclasses).
        eval_batch_size: 1 for full-resolution evaluation (a larger value without ``eval_size`` falls back to 1).
        eval_size: centre-crop evaluation images to this size (None: full resolution).
        check: image check at set-up (``none``, ``exists``, ``header``, ``full``).
        convert: accept grayscale / RGBA / palette / 16-bit images (converted to 8-bit RGB).
        on_error: set-up check: ``raise`` (default) or ``skip`` bad manifest rows (logged and counted).
        on_bad_sample: during training: ``error`` (default; the error names the file and the manifest row) or
            ``skip`` (logged, replaced by another sample of the same task, counted per epoch).
        unknown_task: label for rows of task ``unknown`` (TOLED / POLED).
        synth: ``{noise_sigma, jpeg_quality}`` for rows whose LQ is synthesised.
        eval_hist_eq_tasks: tasks whose evaluation inputs are histogram-equalised.
        shards: a folder of pre-decoded training shards (:mod:`src.data.shards`) to read training images from.
    """

    def __init__(self, data_root: str, train_manifests: Sequence[str] = (), testsets: Mapping[str, str] | None = None,
                 val_sets: Sequence[str] | None = None, val_limit_per_set: int | None = None,
                 manifest_dir: str | None = None, batch_size: int = 10, train_samples: int | None = None,
                 eval_batch_size: int = 1, eval_size: int | None = None, num_workers: int = 2,
                 check: str = "exists", check_jobs: int = 4,
                 convert: bool = False, on_error: str = "raise", on_bad_sample: str = "error",
                 unknown_task: str = "blur",
                 synth: Mapping | None = None, eval_hist_eq_tasks: Sequence[str] = (), seed: int = 0,
                 pin_memory: bool = False, tasks: Sequence[str] | None = None, shards: str | None = None):
        super().__init__()
        if eval_batch_size > 1 and not eval_size:
            log.warning("eval_batch_size=%d without eval_size: full-resolution evaluation images differ in size, "
                        "so they are evaluated one at a time", eval_batch_size)
        if on_bad_sample not in ON_BAD_SAMPLE:
            raise ValueError(f"data.on_bad_sample={on_bad_sample!r}: expected one of {', '.join(ON_BAD_SAMPLE)}")
        if unknown_task not in TASKS:
            raise ValueError(f"unknown_task={unknown_task!r}: expected one of {list(TASKS)}")
        testsets = dict(testsets or {})
        missing = [v for v in (val_sets or []) if v not in testsets]
        if missing:
            raise ValueError(f"val_sets {missing} are not in testsets ({sorted(testsets)})")
        unknown = sorted(set(tasks or ()) - set(TASKS))
        if unknown:
            raise ValueError(f"data.tasks: unknown task(s) {unknown}; expected some of {list(TASKS)}")
        trained = set(tasks or TASKS)
        self.testset_manifests = {  # name -> manifest of the sets this run evaluates (of trained tasks only)
            name: spec if isinstance(spec, str) else spec["manifest"] for name, spec in testsets.items()
            if isinstance(spec, str) or set(spec.get("tasks") or ()) <= trained}
        self.save_hyperparameters(logger=False)
        self.task_names = list(TASKS)
        self.train_set: ManifestDataset | None = None
        self.val_set: EvalDataset | None = None
        self.test_set: EvalDataset | None = None

    # ------------------------------------------------------------------ manifests
    def manifest_path(self, name: str) -> Path:
        p = Path(name)
        return p if p.is_absolute() else Path(self.hparams.manifest_dir or DEFAULT_MANIFEST_DIR) / p

    def load_rows(self, manifests: Sequence[str], unique: bool = False) -> list[Row]:
        """The checked rows of ``manifests``; a manifest without usable rows is an error. ``unique``: a sample
        listed in two manifests (or twice) is a problem too (raised, or dropped with ``on_error: skip``)."""
        hp = self.hparams
        rows: list[Row] = []
        for m in manifests:
            path = self.manifest_path(m)
            got = load_manifest(path, hp.data_root, level=hp.check, convert=hp.convert, on_error=hp.on_error,
                                jobs=hp.check_jobs)
            if not got:
                raise ValueError(f"manifest {path} has no usable rows (rebuild it: python -m src.data.manifests "
                                 "build ...)")
            rows += got
        if unique:
            problems, dup = duplicate_problems(rows, "training rows")
            _raise_or_skip(f"training manifests {list(manifests)}", problems, hp.on_error, len(dup))
            rows = [r for i, r in enumerate(rows) if i not in dup]
        return rows

    def _common(self) -> dict:
        hp = self.hparams
        return {"convert": hp.convert, "unknown_task": hp.unknown_task, "synth": SynthConfig(**(hp.synth or {}))}

    def _eval_set(self, names: Sequence[str], limit: int | None) -> EvalDataset | None:
        hp = self.hparams
        if not names:
            return None
        rows = first_per_source(self.load_rows([self.testset_manifests[n] for n in names]), limit)
        if hp.on_bad_sample == "skip":  # evaluation never substitutes: name a bad image now, not after an epoch
            rows = check_rows(rows, hp.data_root, level="full", convert=hp.convert, on_error=hp.on_error,
                              what=f"evaluation sets {list(names)}", jobs=hp.check_jobs).rows
        return EvalDataset(rows, hp.data_root, hist_eq_tasks=hp.eval_hist_eq_tasks, crop=hp.eval_size, seed=hp.seed,
                           **self._common())

    def shard_resize_allowed(self) -> tuple:
        """Resolutions that training shards may have been resized to (None: the original images)."""
        return (None,)

    @abc.abstractmethod
    def build_train_set(self, rows: list[Row]) -> ManifestDataset:
        """The training dataset of this paper's recipe (its crops, augmentation and task balancing)."""

    @abc.abstractmethod
    def train_sampler(self, rank: int, world_size: int):
        """The balancing sampler of this rank's shard."""

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit") and self.train_set is None:
            if not hp.train_manifests:
                raise ValueError("no train_manifests given")
            rows = self.load_rows(hp.train_manifests, unique=True)
            log.info("training rows per task: %s", dict(task_counts(rows)))
            self.train_set = self.build_train_set(rows)
            if hp.get("shards"):
                from src.data.shards import ShardImages  # litdata: the `shards` extra

                images = ShardImages(hp.shards)
                images.check_rows(rows)
                if images.resize not in self.shard_resize_allowed():
                    raise ValueError(f"data.shards={hp.shards} holds images resized to {images.resize}²; this "
                                     f"pipeline needs {' or '.join(map(str, self.shard_resize_allowed()))}")
                self.train_set.images = images
        if stage in (None, "fit", "validate") and self.val_set is None:
            names = list(hp.val_sets) if hp.val_sets is not None else list(self.testset_manifests)
            self.val_set = self._eval_set([n for n in names if n in self.testset_manifests], hp.val_limit_per_set)
        if stage in (None, "test") and self.test_set is None:
            self.test_set = self._eval_set(list(self.testset_manifests), None)

    # ------------------------------------------------------------------ loaders
    def _rank(self) -> tuple[int, int]:
        return dist_info(self.trainer)

    def _loader(self, dataset, sampler, batch_size: int, drop_last: bool, cls: type = DataLoader) -> DataLoader:
        workers = self.hparams.num_workers
        return cls(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                          persistent_workers=workers > 0, worker_init_fn=worker_init_fn,
                          pin_memory=self.hparams.pin_memory)

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        rank, world = self._rank()
        cls = SkipReportingLoader if self.hparams.on_bad_sample == "skip" else DataLoader
        return self._loader(self.train_set, self.train_sampler(rank, world), self.hparams.batch_size, True, cls)

    def _eval_loader(self, dataset):
        if dataset is None:
            return []
        rank, world = self._rank()
        batch = self.hparams.eval_batch_size if self.hparams.eval_size else 1
        return self._loader(dataset, ShardSampler(len(dataset), rank, world), batch, False)

    def val_dataloader(self):
        if self.val_set is None:
            self.setup("validate")
        return self._eval_loader(self.val_set)

    def test_dataloader(self):
        if self.test_set is None:
            self.setup("test")
        return self._eval_loader(self.test_set)


class DiffUIRDataModule(ManifestDataModule):
    """DiffUIR's five-task training (paper §4.2; official per-task batch sizes 4 / 1 / 2 / 2 / 1).

    Args (besides :class:`ManifestDataModule`'s):
        task_weights: ``{task: weight}``; each batch holds ``weight × batch_size`` samples of each task (exactly when
            that is an integer, else in expectation; see :class:`~src.data.balancing.TaskCompositionSampler`).
        patch_size: random crop size (256).
        train_samples: samples per "epoch" over all ranks (the official trainer counts steps only), rounded up to
            whole batches on every rank.
        hflip, vflip: random flips (the paper uses both; the official code horizontal only).
        hist_eq_tasks: tasks whose training inputs are histogram-equalised (low-light).
        tasks: train only these tasks (their ``task_weights``, renormalised; a task without one gets 1/len(tasks);
            default: every weighted task); test sets of other tasks are left out.
    """

    def __init__(self, data_root: str, task_weights: Mapping[str, float] | None = None, patch_size: int = 256,
                 train_samples: int = 10000, hflip: bool = True, vflip: bool = True,
                 hist_eq_tasks: Sequence[str] = ("low_light",), eval_hist_eq_tasks: Sequence[str] = ("low_light",),
                 **kw):
        weights = dict(task_weights or DIFFUIR_TASK_WEIGHTS)
        _weights_vector(weights)  # unknown task names fail here, at instantiation
        super().__init__(data_root, eval_hist_eq_tasks=eval_hist_eq_tasks, train_samples=train_samples,
                         **kw)  # saves every init argument

    def _weights(self) -> list[float]:
        """Per-task weights over TASKS: ``task_weights`` restricted to ``tasks`` (the sampler normalises them)."""
        hp = self.hparams
        weights = dict(hp.task_weights or DIFFUIR_TASK_WEIGHTS)
        if hp.get("tasks") is not None:  # a trained task without a weight gets an equal share
            weights = {t: float(weights.get(t) or 0) or 1 / len(hp.tasks) for t in hp.tasks}
        return _weights_vector(weights)

    def build_train_set(self, rows: list[Row]) -> ManifestDataset:
        hp = self.hparams
        ds = DiffUIRTrainDataset(rows, hp.data_root, patch_size=hp.patch_size, hflip=hp.hflip, vflip=hp.vflip,
                                 hist_eq_tasks=hp.hist_eq_tasks, on_bad_sample=hp.on_bad_sample, **self._common())
        weights = self._weights()
        pools = task_pools(ds.labels)
        empty = [t for t, w, p in zip(TASKS, weights, pools) if w > 0 and len(p) == 0]
        if empty:
            raise ValueError(f"tasks {empty} have a positive weight but no rows in {list(hp.train_manifests)}")
        unused = {t: len(p) for t, w, p in zip(TASKS, weights, pools) if w == 0 and len(p)}
        if unused:
            log.warning("training rows of tasks without weight are never drawn: %s", unused)
        return ds

    def train_sampler(self, rank: int, world_size: int) -> TaskCompositionSampler:
        hp = self.hparams
        batches = max(1, math.ceil(hp.train_samples / (hp.batch_size * world_size)))
        return TaskCompositionSampler(task_pools(self.train_set.labels),
                                      self._weights(), hp.batch_size,
                                      batches, seed=hp.seed, rank=rank, world_size=world_size)


class DiffRestorerDataModule(ManifestDataModule):
    """Diff-Restorer's eight-task training (paper §IV-A).

    Args (besides :class:`ManifestDataModule`'s):
        samples_per_task: N, samples of every task per epoch (10K): larger pools subsampled afresh each epoch,
            smaller ones oversampled, the extra copies augmented (:class:`~src.data.datasets.OversampleAugment`).
        train_samples: if set, samples per epoch over all tasks and ranks (N = train_samples / number of tasks).
        patch_size: training resolution (512).
        resize_mode: ``resize`` (the paper: whole images resized to ``patch_size``²) or ``random_crop``.
        augment: overrides of :class:`~src.data.datasets.OversampleAugment`'s fields.
        tasks: the tasks that must have training rows (default: all eight).
    """

    def __init__(self, data_root: str, samples_per_task: int = 10000, patch_size: int = 512,
                 resize_mode: str = "resize", augment: Mapping | None = None, tasks: Sequence[str] = TASKS, **kw):
        OversampleAugment(**(augment or {}))  # bad field names fail at instantiation
        super().__init__(data_root, tasks=tasks, **kw)  # saves every init argument (subclasses' included)

    def shard_resize_allowed(self) -> tuple:
        hp = self.hparams  # resize mode: every image is resized to patch_size², once in the shards or per sample
        return (None, hp.patch_size) if hp.resize_mode == "resize" else (None,)

    def build_train_set(self, rows: list[Row]) -> ManifestDataset:
        hp = self.hparams
        aug = OversampleAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in (hp.augment or {}).items()})
        ds = DiffRestorerTrainDataset(rows, hp.data_root, image_size=hp.patch_size, resize_mode=hp.resize_mode,
                                      augment=aug, on_bad_sample=hp.on_bad_sample, **self._common())
        pools = task_pools(ds.labels)
        empty = [t for t, p in zip(TASKS, pools) if t in hp.tasks and len(p) == 0]
        if empty:
            raise ValueError(f"tasks {empty} have no training rows in {list(hp.train_manifests)} "
                             f"(rows per task: { {t: len(p) for t, p in zip(TASKS, pools)} })")
        return ds

    def train_sampler(self, rank: int, world_size: int) -> BalancedTaskSampler:
        hp = self.hparams
        pools = [p if t in hp.tasks else p[:0] for t, p in zip(TASKS, task_pools(self.train_set.labels))]
        n = max(1, hp.train_samples // len(hp.tasks)) if hp.train_samples else hp.samples_per_task
        return BalancedTaskSampler(pools, n, seed=hp.seed, rank=rank, world_size=world_size)
