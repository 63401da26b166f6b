"""Task balancing samplers for the two papers' training recipes, shardable across DDP ranks.

* :class:`TaskCompositionSampler` (DiffUIR): every batch has a fixed task composition, e.g. batch 10 with weights
  0.4 haze / 0.1 low-light / 0.2 rain / 0.2 snow / 0.1 blur is always 4 + 1 + 2 + 2 + 1 samples, as the official
  trainer concatenates five per-task loaders of batch sizes 4, 1, 2, 2, 1. When ``weight × batch`` is not an
  integer, each batch gets ``floor(weight × batch)`` samples of a task plus one more with probability equal to the
  fractional part (systematic sampling: the extra slots always add up to the batch), so the expected composition is
  exactly ``weight × batch``. Each task is drawn without replacement from its own pool, reshuffled on every pass.
* :class:`BalancedTaskSampler` (Diff-Restorer): every task contributes exactly ``samples_per_task`` samples per
  epoch (10K in the paper): a larger pool is subsampled (a fresh random subset every epoch), a smaller one is
  oversampled: every row once unaugmented, the extra copies flagged for augmentation.

Both yield :class:`SampleKey` (row index, per-sample seed, augmentation flag) that the datasets in
``src.data.datasets`` understand. The seed of every sample is drawn from the sampler's seed, the epoch and the
sample's position in the *global* (all-rank) order, so augmentation and synthesis do not depend on the number of
workers or ranks. Under DDP each rank takes its own shard of the global order (``rank::world_size``): shards are
disjoint and together cover the epoch.

Both are :class:`~torch.utils.data.distributed.DistributedSampler` subclasses, so Lightning leaves them in place
(it would otherwise wrap them in its own distributed sampler) and calls :meth:`set_epoch` every epoch. Rank and world
size are given explicitly (:func:`dist_info` reads them from the Trainer or ``torch.distributed``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler
from torch.utils.data.distributed import DistributedSampler

from src.tasks import TASKS

_SEED_MAX = 2**63 - 1


class SampleKey(NamedTuple):
    """What a sampler hands a dataset: the manifest row, the sample's random seed, whether to augment it."""

    row: int
    seed: int
    augment: bool = False


def dist_info(trainer=None) -> tuple[int, int]:
    """``(rank, world_size)``: from a Lightning ``trainer`` when given, else ``torch.distributed``, else (0, 1)."""
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")


class _ShardedSampler(DistributedSampler):
    """DistributedSampler attributes without its constructor (which needs the dataset / an initialised group)."""

    def __init__(self, rank: int, world_size: int, seed: int, shuffle: bool = True):
        Sampler.__init__(self)
        _check_rank(rank, world_size)
        self.rank, self.num_replicas, self.seed, self.shuffle = int(rank), int(world_size), int(seed), shuffle
        self.epoch, self.drop_last = 0, False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


def composition_counts(weights: Sequence[float], batch_size: int) -> np.ndarray:
    """Expected samples of each task in a batch: ``weight / sum(weights) × batch_size`` (float array)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"task weights must be non-negative with a positive sum, got {list(weights)}")
    return w / w.sum() * batch_size


def draw_composition(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer counts summing to ``round(expected.sum())`` with ``E[counts] = expected`` (systematic sampling).

    Integer expectations are returned exactly (no randomness used in that case).
    """
    base = np.floor(expected + 1e-9).astype(np.int64)
    frac = np.clip(expected - base, 0.0, 1.0)
    frac[frac < 1e-9] = 0.0
    extra = int(round(frac.sum()))
    if extra == 0:
        return base
    edges = np.concatenate([[0.0], np.cumsum(frac)])
    points = rng.random() + np.arange(extra)
    hit = np.searchsorted(edges, points, side="right") - 1
    np.add.at(base, np.clip(hit, 0, len(frac) - 1), 1)
    return base


class _TaskStream:
    """Endless draws without replacement from one task's rows: successive seeded permutations of the pool."""

    def __init__(self, rows: np.ndarray, seed: Sequence[int]):
        self.rows, self.seed, self.pass_, self.pos = rows, list(seed), 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> np.ndarray:
        return self.rows[np.random.default_rng([*self.seed, self.pass_]).permutation(len(self.rows))]

    def take(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self.pos == len(self._perm):
                self.pass_, self.pos = self.pass_ + 1, 0
                self._perm = self._permutation()
            k = min(n, len(self._perm) - self.pos)
            out.append(self._perm[self.pos:self.pos + k])
            self.pos, n = self.pos + k, n - k
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


class TaskCompositionSampler(_ShardedSampler):
    """DiffUIR's per-batch task composition (see the module docstring); yields ``batches_per_epoch × batch_size``
    :class:`SampleKey` per rank and epoch, every consecutive ``batch_size`` of them one batch.

    Use it with ``DataLoader(dataset, batch_size=batch_size, sampler=this, drop_last=True)``.

    Args:
        task_rows: for each task, the indices of its rows in the dataset.
        weights: one weight per task (normalised); a task of weight 0 is never drawn.
        batch_size: samples per batch on each rank.
        batches_per_epoch: batches per rank per epoch.
        seed, rank, world_size: see the module docstring.
    """

    def __init__(self, task_rows: Sequence[Sequence[int]], weights: Sequence[float], batch_size: int,
                 batches_per_epoch: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(rank, world_size, seed)
        if len(task_rows) != len(weights):
            raise ValueError(f"{len(task_rows)} task pools but {len(weights)} weights")
        if batch_size < 1 or batches_per_epoch < 1:
            raise ValueError("batch_size and batches_per_epoch must be >= 1")
        self.expected = composition_counts(weights, batch_size)
        for i, (rows, e) in enumerate(zip(task_rows, self.expected)):
            if e > 0 and len(rows) == 0:
                raise ValueError(f"task #{i} has weight {weights[i]} but no rows")
        self.task_rows = [np.asarray(r, dtype=np.int64) for r in task_rows]
        self.batch_size, self.batches_per_epoch = int(batch_size), int(batches_per_epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def batches(self) -> Iterator[list[SampleKey]]:
        """This rank's batches of the current epoch."""
        streams = [_TaskStream(rows, (self.seed, 1, self.epoch, t)) if len(rows) else None
                   for t, rows in enumerate(self.task_rows)]
        for g in range(self.batches_per_epoch * self.num_replicas):
            rng = np.random.default_rng([self.seed, 2, self.epoch, g])
            counts = draw_composition(self.expected, rng)
            rows = np.concatenate([streams[t].take(int(c)) for t, c in enumerate(counts) if c > 0])
            rows = rows[rng.permutation(len(rows))]
            seeds = rng.integers(0, _SEED_MAX, size=len(rows))
            if g % self.num_replicas == self.rank:
                yield [SampleKey(int(r), int(s)) for r, s in zip(rows, seeds)]

    def __iter__(self) -> Iterator[SampleKey]:
        for batch in self.batches():
            yield from batch


class BalancedTaskSampler(_ShardedSampler):
    """Diff-Restorer's per-epoch balancing (see the module docstring): ``samples_per_task`` keys per task and epoch,
    shuffled together, split across ranks (padded by wrapping around so every rank gets ``ceil(total / world)``).

    Args:
        task_rows: for each task, the indices of its rows in the dataset (empty pools contribute nothing).
        samples_per_task: N, the samples every non-empty task contributes per epoch.
        augment_oversampled: flag the extra copies of an oversampled pool for augmentation.
    """

    def __init__(self, task_rows: Sequence[Sequence[int]], samples_per_task: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True, augment_oversampled: bool = True):
        super().__init__(rank, world_size, seed, shuffle)
        if samples_per_task < 1:
            raise ValueError("samples_per_task must be >= 1")
        self.task_rows = [np.asarray(r, dtype=np.int64) for r in task_rows]
        self.samples_per_task, self.augment_oversampled = int(samples_per_task), augment_oversampled
        self.total = self.samples_per_task * sum(len(r) > 0 for r in self.task_rows)
        if self.total == 0:
            raise ValueError("no rows in any task")

    def __len__(self) -> int:
        return math.ceil(self.total / self.num_replicas)

    def epoch_plan(self) -> tuple[np.ndarray, np.ndarray]:
        """All ranks' rows and augmentation flags for the current epoch, in global order."""
        rows_all, aug_all = [], []
        n = self.samples_per_task
        for t, pool in enumerate(self.task_rows):
            m = len(pool)
            if m == 0:
                continue
            rng = np.random.default_rng([self.seed, 3, self.epoch, t])
            if m >= n:  # subsample: a fresh subset every epoch, no augmentation
                rows, aug = pool[rng.permutation(m)[:n]], np.zeros(n, dtype=bool)
            else:  # oversample: every row once as is, extra copies augmented
                reps, rem = divmod(n, m)
                idx = np.concatenate([np.tile(np.arange(m), reps), rng.choice(m, rem, replace=False)])
                rows = pool[idx]
                aug = np.arange(n) >= m if self.augment_oversampled else np.zeros(n, dtype=bool)
            rows_all.append(rows)
            aug_all.append(aug)
        rows, aug = np.concatenate(rows_all), np.concatenate(aug_all)
        if self.shuffle:
            order = np.random.default_rng([self.seed, 4, self.epoch]).permutation(len(rows))
            rows, aug = rows[order], aug[order]
        return rows, aug

    def __iter__(self) -> Iterator[SampleKey]:
        rows, aug = self.epoch_plan()
        seeds = np.random.default_rng([self.seed, 5, self.epoch]).integers(0, _SEED_MAX, size=len(rows))
        padded = len(self) * self.num_replicas
        idx = np.arange(padded) % len(rows)
        for i in idx[self.rank::self.num_replicas]:
            yield SampleKey(int(rows[i]), int(seeds[i]), bool(aug[i]))


class ShardSampler(_ShardedSampler):
    """Evaluation: indices ``rank, rank + world, ...`` in order, no padding (every sample evaluated exactly once)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        super().__init__(rank, world_size, seed=0, shuffle=False)
        self.length = int(length)

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))


def task_pools(labels: Sequence[int], tasks: Sequence[str] = TASKS) -> list[np.ndarray]:
    """Row indices per task: ``labels[i]`` is row i's index into ``tasks``."""
    labels = np.asarray(labels, dtype=np.int64)
    return [np.flatnonzero(labels == t) for t in range(len(tasks))]


def weights_vector(weights: Mapping[str, float], tasks: Sequence[str] = TASKS) -> list[float]:
    """A ``{task: weight}`` mapping as a list over ``tasks`` (missing tasks weigh 0); unknown names are an error."""
    unknown = set(weights) - set(tasks)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)} in task weights; expected some of {list(tasks)}")
    return [float(weights.get(t, 0.0)) for t in tasks]
