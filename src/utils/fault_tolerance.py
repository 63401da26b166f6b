"""Training that survives faults: atomic checkpoints, a clean stop on NaN/inf, and bit-exact resumption.

:class:`FaultTolerance` is one Lightning callback (in ``conf/callbacks/default.yaml``):

* **Atomic checkpoints.** It installs :class:`AtomicCheckpointIO` as the strategy's checkpoint writer, so every
  checkpoint (``last.ckpt`` included) is written to a temporary file and renamed: a run killed while saving
  leaves the previous file intact, never a truncated one.
* **Safe resumption.** The same writer reads ``ckpt_path`` (:class:`SafeCheckpointIO`): weights-only, the stored
  model config checked against the suite's allowlist, and a checkpoint that does not fit the model being trained
  (another size) named in one sentence before Lightning loads anything.
* **Leftovers of a kill.** At the start of a fit, the temporary files a killed run left beside its checkpoints
  (``.last.ckpt.<random>.tmp``, in this run's checkpoint folder and in the resumed checkpoint's) are removed, and a
  line says so; one touched in the last 30 s is left alone (another process may be writing it).
* **Non-finite loss or weights.** A NaN/inf loss stops the run before its backward pass (so no optimiser step
  and no checkpoint ever sees it) with :class:`NonFiniteLossError`; a checkpoint whose weights are not all finite
  is refused (:class:`NonFiniteWeightsError`) before anything is written. The DiffUIR module raises its own
  ``FloatingPointError`` from ``training_step``; for either, the callback logs what happened, whether the batch
  itself held NaN/inf, and the last good checkpoint with the command to resume from it.
* **Exact resumption** (``exact_resume``). A run resumed from ``last.ckpt`` continues with the same random
  numbers and the same data an uninterrupted run would have used, so on CPU with a fixed seed it reaches the same
  global step with bit-identical weights, whether it was killed mid-epoch or at an epoch end. Lightning alone does
  not: it stores no RNG state, and after a mid-epoch restart it iterates the epoch's data from a fresh shuffle.
  What is saved (under ``checkpoint["callbacks"]["FaultTolerance"]``, weights-only loadable): the torch (CPU and
  CUDA), NumPy and Python RNG states, and the train sampler's shuffle seed with the number of batches already
  drawn this epoch. What is done with them:

  - the train loader's ``RandomSampler`` / ``SequentialSampler`` is replaced in place by a resumable one that
    yields the very same order (same seed draw from the same RNG, same ``randperm``) and can restart mid-epoch;
  - on resume, at the first batch fetch, the RNG states are restored (and, when the checkpoint closed an epoch,
    a fresh epoch's data-loader iterator is replayed, as the uninterrupted run did), then the sampler continues
    right after the last batch trained — no sample repeated or skipped;
  - validation during fit is made RNG-neutral (the states of the last training batch are put back after it), so
    that whether a resumed run re-validates or not cannot shift the training stream.

  Exact for one process with ``num_workers=0`` (the tests prove it on CPU). With worker processes the order is
  still resumed exactly but per-worker augmentation RNG is not; under DDP samplers are Lightning's
  ``DistributedSampler`` (not replaced) and every rank gets rank 0's RNG states (the suite seeds all ranks alike).
  GPU kernels may be non-deterministic, so on GPU expect equal steps and equal data, not equal bits.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from src.utils.atomic import atomic_open, describe_cleanup, remove_stale_temporaries
from src.utils.checkpoints import check_resume_checkpoint, read_checkpoint

log = logging.getLogger(__name__)
STATE_VERSION = 1


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; raised before its backward pass."""


class NonFiniteWeightsError(FloatingPointError):
    """A checkpoint was about to be written with NaN or infinite weights; nothing was written."""


# ------------------------------------------------------------------------------------------------ checkpoint I/O
class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader for resumption (``ckpt_path``), through the suite's loader rules.

    The file is read weights-only (:func:`src.utils.checkpoints.read_checkpoint`: pickled code is refused, an empty,
    truncated or foreign file is named), its stored model config must pass the suite's allowlist, and when the
    module being trained is known (``module``, set by :class:`FaultTolerance`) its weights must fit that module:
    a checkpoint of another size is described in one sentence before Lightning loads anything.
    """

    module: torch.nn.Module | None = None

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        text = str(path)
        if "://" in text and not text.startswith("file://"):  # fsspec URLs: Lightning's reader, weights-only
            checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=True)
        else:
            text = text.removeprefix("file://")
            checkpoint = read_checkpoint(text, map_location=map_location or "cpu", what="checkpoint to resume from")
        return check_resume_checkpoint(checkpoint, text, self.module)


class AtomicCheckpointIO(SafeCheckpointIO):
    """``torch.save`` to a temporary file beside the target, fsync, rename: a kill never truncates a checkpoint.

    Remote paths (``s3://`` and other fsspec URLs) have no atomic rename; they are written as Lightning does.
    Reading is :class:`SafeCheckpointIO`'s.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("`Trainer.save_checkpoint(..., storage_options=...)` with `storage_options` arg"
                            f" is not supported for `{self.__class__.__name__}`.")
        text = str(path)
        if "://" in text and not text.startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(text.removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target, "wb") as handle:
            torch.save(checkpoint, handle)


# ------------------------------------------------------------------------------------------------ RNG states
def collect_rng_states() -> dict:
    """torch (CPU, and CUDA when initialised), NumPy and Python global RNG states, as weights-only-loadable data."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return states


def set_rng_states(states: dict) -> None:
    """Inverse of :func:`collect_rng_states`."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            rank_zero_warn(f"checkpoint has CUDA RNG states for {len(cuda)} devices, this machine has "
                           f"{torch.cuda.device_count()}: CUDA RNG not restored")


# ------------------------------------------------------------------------------------------------ resumable samplers
class _ResumeMixin:
    """Pending-resume bookkeeping shared by the resumable samplers.

    ``arm(state, skip, before_first)``: the next ``__iter__`` continues the epoch described by ``state`` after
    ``skip`` indices (or, with ``state=None``, starts a fresh epoch) and first calls ``before_first()``.
    """

    def _init_resume(self) -> None:
        self._epoch_state: Any = None
        self._pending: tuple[Any, int, Any] | None = None

    def arm(self, state: Any, skip: int, before_first=None) -> None:
        self._pending = (state, int(skip), before_first)

    def epoch_state(self) -> Any:
        """What identifies the current epoch's order (None before the first epoch)."""
        return self._epoch_state

    def _take_pending(self) -> tuple[Any, int]:
        if self._pending is None:
            return None, 0
        state, skip, hook = self._pending
        self._pending = None
        if hook is not None:
            hook()
        return state, skip


class ResumableRandomSampler(_ResumeMixin, RandomSampler):
    """``RandomSampler`` with the same order for the same torch RNG state, that can resume mid-epoch.

    Without a generator the epoch's order comes from a seed drawn from torch's global RNG, as in
    ``RandomSampler``; with one, from that generator's state at the start of the epoch.
    """

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None, generator=None):
        super().__init__(data_source, replacement=replacement, num_samples=num_samples, generator=generator)
        self._init_resume()

    @classmethod
    def from_sampler(cls, sampler: RandomSampler) -> ResumableRandomSampler:
        return cls(sampler.data_source, sampler.replacement, sampler._num_samples, sampler.generator)

    def _indices(self, generator: torch.Generator) -> Iterator[int]:  # RandomSampler.__iter__'s sequence
        n = len(self.data_source)
        if self.replacement:
            for _ in range(self.num_samples // 32):
                yield from torch.randint(high=n, size=(32,), dtype=torch.int64, generator=generator).tolist()
            yield from torch.randint(high=n, size=(self.num_samples % 32,), dtype=torch.int64,
                                     generator=generator).tolist()
        else:
            for _ in range(self.num_samples // n):
                yield from torch.randperm(n, generator=generator).tolist()
            yield from torch.randperm(n, generator=generator).tolist()[: self.num_samples % n]

    def __iter__(self) -> Iterator[int]:
        state, skip = self._take_pending()
        if state is None:
            if self.generator is None:
                state = int(torch.empty((), dtype=torch.int64).random_().item())
            else:
                state = self.generator.get_state()
        self._epoch_state = state
        if self.generator is None:
            generator = torch.Generator()
            generator.manual_seed(state)
        else:
            generator = self.generator
            generator.set_state(state)
        for i, index in enumerate(self._indices(generator)):
            if i >= skip:
                yield index


class ResumableSequentialSampler(_ResumeMixin, SequentialSampler):
    """``SequentialSampler`` that can resume mid-epoch."""

    def __init__(self, data_source):
        super().__init__(data_source)
        self._init_resume()

    def __iter__(self) -> Iterator[int]:
        _, skip = self._take_pending()
        self._epoch_state = 0
        return iter(range(skip, len(self.data_source)))


def _flatten_loaders(obj) -> list:
    if isinstance(obj, (list, tuple)):
        return [x for o in obj for x in _flatten_loaders(o)]
    if isinstance(obj, dict):
        return [x for o in obj.values() for x in _flatten_loaders(o)]
    return [] if obj is None else [obj]


# ------------------------------------------------------------------------------------------------ the callback
class FaultTolerance(Callback):
    """Atomic checkpoints, a clean stop on non-finite loss/weights, and exact resumption (see the module doc).

    Args:
        atomic_checkpoints: install :class:`AtomicCheckpointIO` (if the strategy uses Lightning's default writer).
        check_finite_loss: raise :class:`NonFiniteLossError` on a NaN/inf loss, before backward.
        check_finite_weights: refuse to write a checkpoint with NaN/inf weights.
        exact_resume: save/restore RNG and sampler states for bit-exact resumption.
    """

    def __init__(self, atomic_checkpoints: bool = True, check_finite_loss: bool = True,
                 check_finite_weights: bool = True, exact_resume: bool = True):
        self.atomic_checkpoints = atomic_checkpoints
        self.check_finite_loss = check_finite_loss
        self.check_finite_weights = check_finite_weights
        self.exact_resume = exact_resume
        self._trainer: L.Trainer | None = None
        self._samplers: list[tuple[DataLoader, _ResumeMixin]] = []
        self._loaded: dict | None = None
        self._train_rng: dict | None = None
        self._batch: Any = None

    # ---------------------------------------------------------------- set-up
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if stage == "fit" and self.exact_resume:
            # Lightning warns that a mid-epoch resume of a plain DataLoader is unreliable; this callback resumes it
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        if stage != "fit":
            return
        io = trainer.strategy.checkpoint_io
        if type(io) is TorchCheckpointIO:
            io = AtomicCheckpointIO() if self.atomic_checkpoints else SafeCheckpointIO()
            trainer.strategy.checkpoint_io = io
        elif self.atomic_checkpoints and not isinstance(io, AtomicCheckpointIO):
            rank_zero_warn(f"FaultTolerance: the strategy writes checkpoints with {type(io).__name__}; "
                           "left as it is (checkpoints are not guaranteed atomic, resumption reads are Lightning's)")
        if isinstance(io, SafeCheckpointIO):
            io.module = pl_module

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Remove the temporary files a killed run left in the checkpoint folders (this run's, and the folder of the
        checkpoint it resumes from), and say so."""
        if not trainer.is_global_zero:
            return
        folders = [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
        if trainer.ckpt_path and "://" not in str(trainer.ckpt_path):
            folders.append(Path(trainer.ckpt_path).parent)
        line = describe_cleanup(*remove_stale_temporaries(folders))
        if line:
            log.warning(f"FaultTolerance: {line}")

    def _install_samplers(self, trainer: L.Trainer) -> None:
        """Swap the train loaders' stock samplers for resumable ones yielding the same order (idempotent)."""
        self._samplers = []
        for loader in _flatten_loaders(trainer.train_dataloader):
            batch_sampler = getattr(loader, "batch_sampler", None)
            if not isinstance(loader, DataLoader) or type(batch_sampler) is not BatchSampler:
                continue
            inner = batch_sampler.sampler
            if isinstance(inner, _ResumeMixin):
                pass
            elif type(inner) is RandomSampler:
                inner = ResumableRandomSampler.from_sampler(inner)
            elif type(inner) is SequentialSampler:
                inner = ResumableSequentialSampler(inner.data_source)
            else:
                continue
            # the DataLoader's own `sampler` attribute is frozen after construction, but iteration goes through
            # its batch sampler, whose iterator looks the sampler up when it starts
            batch_sampler.sampler = inner
            self._samplers.append((loader, inner))

    # ---------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict:
        if not self.exact_resume or self._trainer is None:
            return {}
        trainer = self._trainer
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {
            "version": STATE_VERSION,
            "rng": collect_rng_states(),
            "epoch_batches_done": int(progress.ready),
            "epoch_batches_total": float(trainer.num_training_batches),
            "samplers": [{"type": type(s).__name__, "epoch_state": s.epoch_state(),
                          "batch_size": int(loader.batch_sampler.batch_size)} for loader, s in self._samplers],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._loaded = state_dict if state_dict and state_dict.get("version") == STATE_VERSION else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.exact_resume:
            return
        self._install_samplers(trainer)
        state, self._loaded = self._loaded, None
        if state is None:
            return
        saved = state["samplers"]
        restore_rng = _Once(lambda: set_rng_states(state["rng"]))
        if len(saved) != len(self._samplers) or len(self._samplers) != 1 or any(
                s["type"] != type(sampler).__name__ for s, (_, sampler) in zip(saved, self._samplers)):
            restore_rng()
            rank_zero_warn("FaultTolerance: the train data loader is not a single DataLoader with a random or "
                           "sequential sampler like the checkpoint's; RNG states restored, but the data order of "
                           "the resumed epoch is Lightning's (not an exact resumption)")
            return
        (loader, sampler), info = self._samplers[0], saved[0]
        epoch_closed = state["epoch_batches_done"] >= state["epoch_batches_total"]
        if not epoch_closed and info["epoch_state"] is None:
            rank_zero_warn("FaultTolerance: the checkpoint has no shuffle state for its unfinished epoch (was the "
                           "sampler swapped after the epoch began?); the resumed epoch starts a fresh shuffle")
        if epoch_closed or info["epoch_state"] is None:
            # the uninterrupted run went on to a new epoch: a new DataLoader iterator (one draw from the RNG in
            # torch's DataLoader), then a fresh shuffle. Replay exactly that after restoring the RNG.
            def fresh_epoch() -> None:
                restore_rng()
                if loader.num_workers == 0:
                    iter(loader)  # a throw-away single-process iterator: only its RNG draw matters
                else:
                    torch.empty((), dtype=torch.int64).random_(generator=loader.generator)

            sampler.arm(None, 0, fresh_epoch)
        else:
            sampler.arm(info["epoch_state"], state["epoch_batches_done"] * info["batch_size"], restore_rng)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.exact_resume:  # loaders reloaded every n epochs are new objects
            self._install_samplers(trainer)

    # ---------------------------------------------------------------- RNG-neutral validation
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.exact_resume:
            self._train_rng = collect_rng_states()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (self.exact_resume and self._train_rng is not None and not trainer.sanity_checking
                and trainer.state.fn == "fit"):
            set_rng_states(self._train_rng)

    # ---------------------------------------------------------------- non-finite values
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch = batch  # a reference, inspected only if the step fails

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if self.check_finite_loss and not bool(torch.isfinite(loss.detach()).all()):
            raise NonFiniteLossError(f"training loss became {loss.detach().float().flatten()[0].item()} at global "
                                     f"step {trainer.global_step} (epoch {trainer.current_epoch}); the run was "
                                     "stopped before its backward pass, the weights are those of the last step")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not self.check_finite_weights:
            return
        bad = [k for k, v in checkpoint.get("state_dict", {}).items()
               if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise NonFiniteWeightsError(
                f"{len(bad)} weight tensor(s) are NaN/inf at global step {trainer.global_step} (e.g. {bad[0]}); "
                "the checkpoint was not written")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, FloatingPointError) or not trainer.is_global_zero:
            return
        lines = [f"Training stopped at global step {trainer.global_step} (epoch {trainer.current_epoch}): "
                 f"{type(exception).__name__}: {exception}"]
        bad_inputs = _non_finite_tensors(self._batch)
        if bad_inputs:
            lines.append(f"The batch itself holds NaN/inf values in: {', '.join(bad_inputs)} — check the data.")
        else:
            lines.append("The batch is finite: likely divergence (lower the learning rate, keep gradient "
                         "clipping, use 32-bit precision).")
        last = _last_checkpoint(trainer)
        if last:
            step = _checkpoint_step(last)
            lines.append(f"No checkpoint was written with the bad values. Last good checkpoint: {last}"
                         + (f" (global step {step})" if step is not None else "")
                         + f"\nOnce the cause is fixed, resume with: python -m src.train ... ckpt_path={last}"
                         + " (an exact resumption replays the same batches and noise, so an unchanged run fails the"
                         + " same way)")
        else:
            lines.append("No checkpoint had been written yet.")
        log.error("\n".join(lines))


class _Once:
    def __init__(self, fn):
        self.fn, self.done = fn, False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            self.fn()


def _non_finite_tensors(batch: Any, prefix: str = "batch") -> list[str]:
    if torch.is_tensor(batch):
        return [prefix] if batch.is_floating_point() and not bool(torch.isfinite(batch).all()) else []
    if isinstance(batch, dict):
        return [n for k, v in batch.items() for n in _non_finite_tensors(v, f"{prefix}[{k!r}]")]
    if isinstance(batch, (list, tuple)):
        return [n for i, v in enumerate(batch) for n in _non_finite_tensors(v, f"{prefix}[{i}]")]
    return []


def _last_checkpoint(trainer: L.Trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        for path in (getattr(cb, "last_model_path", ""), getattr(cb, "best_model_path", "")):
            if path and os.path.isfile(path):
                return path
    return None


def _checkpoint_step(path: str) -> int | None:
    try:
        return int(read_checkpoint(path, mmap=True)["global_step"])
    except Exception:
        return None
