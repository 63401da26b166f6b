"""Training that survives faults (src/utils/fault_tolerance.py, in the default callbacks), on CPU with a tiny DiffUIR.

* kill-and-resume equivalence: an uninterrupted run A vs a run B stopped after its step-k checkpoint (an
  exception in-process, or SIGKILL of a `python -m src.train` subprocess) and resumed from last.ckpt: same
  global step, bit-identical weights (EMA included) and optimiser state — mid-epoch, at an epoch end, and at a
  step where validation also ran;
* a NaN/inf loss stops the run with a clear message and leaves the last good checkpoint intact; a checkpoint with
  NaN weights is refused; checkpoints are written atomically.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from src.utils.fault_tolerance import (
    AtomicCheckpointIO,
    FaultTolerance,
    NonFiniteLossError,
    NonFiniteWeightsError,
    ResumableRandomSampler,
    ResumableSequentialSampler,
    collect_rng_states,
    set_rng_states,
)
from src.utils.instantiate import build
from tests.conftest import ROOT, compose_train

# 8 training samples, batch 2: 4 batches per epoch; validation (1 batch) every 2 steps
TINY = ["experiment=diffuir_t", "debug=default", "model.net.dim=8", "num_threads=1", "trainer=cpu", "test=false",
        "logger=csv", "data.train_samples=8", "callbacks.progress_bar.refresh_rate=0"]
N_STEPS = 6
pytestmark = pytest.mark.filterwarnings("ignore:The dirpath has changed")  # resumed runs write to a new folder
class CrashAtStep(L.Callback):
    """Raises when the batch after global step ``step`` starts (its data already drawn, as in a real crash)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash after step {self.step}")


class HangAtStep(L.Callback):
    """For the SIGKILL test: after step ``step``'s checkpoint is written, announce it and wait to be killed."""

    def __init__(self, step: int, flag: str):
        self.step, self.flag = step, flag

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            Path(self.flag).write_text(str(os.getpid()))
            time.sleep(600)


class InjectNaN(L.Callback):
    """Puts a NaN in the input images of the batch that follows global step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            batch["lq"][0, 0, 0, 0] = float("nan")


class PoisonWeights(L.Callback):
    """Sets one weight to NaN at the end of step ``step`` (before ModelCheckpoint runs: checkpoint callbacks run
    last), as a diverging optimiser would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.net.head.bias[0] = float("nan")


def _cfg(out: Path, every: int, extra=(), callbacks: str = "default", steps: int = N_STEPS):
    return compose_train([*TINY, f"callbacks={callbacks}", f"trainer.max_steps={steps}",
                          f"callbacks.model_checkpoint.every_n_train_steps={every}", *extra], out)


def _fit(cfg, extra_callbacks=(), ckpt_path=None):
    datamodule, model, trainer = build(cfg)
    trainer.callbacks[:0] = list(extra_callbacks)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model, trainer


def _state(model, trainer) -> dict:
    opt = trainer.optimizers[0].state_dict()["state"]
    return {"step": trainer.global_step, "weights": model.state_dict(),
            "optim": {f"{i}.{k}": v for i, s in opt.items() for k, v in s.items() if torch.is_tensor(v)}}


def _assert_identical(a: dict, b: dict, keys=None) -> None:
    assert a["step"] == b["step"]
    names = [k for k in a["weights"] if keys is None or k.startswith(keys)]
    differing = [k for k in names if not torch.equal(a["weights"][k], b["weights"][k])]
    assert not differing, f"{len(differing)} of {len(names)} tensors differ, e.g. {differing[:3]}"
    assert a["optim"].keys() == b["optim"].keys()
    assert all(torch.equal(a["optim"][k], b["optim"][k]) for k in a["optim"]), "optimiser states differ"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Run A: N_STEPS steps without interruption (checkpointing every step does not touch the RNG streams)."""
    out = tmp_path_factory.mktemp("run_a")
    return _state(*_fit(_cfg(out, every=1, extra=[])))


def _crash_and_resume(tmp_path: Path, k: int, callbacks: str = "default", extra=()) -> dict:
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(_cfg(tmp_path / "b1", every=k, extra=extra, callbacks=callbacks), [CrashAtStep(k)])
    last = tmp_path / "b1" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == k
    return _state(*_fit(_cfg(tmp_path / "b2", every=k, extra=extra, callbacks=callbacks), ckpt_path=str(last)))


@pytest.mark.parametrize("k", [3, 4, 2], ids=["mid-epoch", "epoch-end", "validation-step"])
def test_crash_and_resume_is_bit_exact(uninterrupted, tmp_path, k):
    _assert_identical(uninterrupted, _crash_and_resume(tmp_path, k))


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_exact(uninterrupted, tmp_path):
    """`python -m src.train` killed with SIGKILL mid-epoch (after its step-3 checkpoint), resumed from last.ckpt."""
    k, flag = 3, tmp_path / "hanging"
    args = [*TINY, f"trainer.max_steps={N_STEPS}",
            f"callbacks.model_checkpoint.every_n_train_steps={k}", f"hydra.run.dir={tmp_path}/killed",
            "+callbacks.hang._target_=tests.test_fault_tolerance.HangAtStep", f"+callbacks.hang.step={k}",
            f"+callbacks.hang.flag={flag}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "src.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not flag.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the training subprocess never reached the kill point"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == k
    resumed = _state(*_fit(_cfg(tmp_path / "resumed", every=k, extra=[]), ckpt_path=str(last)))
    _assert_identical(uninterrupted, resumed)


@pytest.mark.slow
def test_without_exact_resume_it_is_not_exact(uninterrupted, tmp_path):
    """Why the callback exists: Lightning alone restores neither RNG states nor the mid-epoch data order."""
    resumed = _crash_and_resume(tmp_path, 3, extra=("callbacks.fault_tolerance.exact_resume=false",))
    assert resumed["step"] == uninterrupted["step"]
    assert not torch.equal(resumed["weights"]["net.head.weight"], uninterrupted["weights"]["net.head.weight"])


# ------------------------------------------------------------------------------------------------ NaN / inf
def _ckpt_step(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["global_step"])


def test_nan_loss_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path, caplog):
    cfg = _cfg(tmp_path, every=1)
    datamodule, model, trainer = build(cfg)
    trainer.callbacks.insert(0, InjectNaN(3))
    with caplog.at_level(logging.ERROR), pytest.raises(FloatingPointError, match="loss became nan at global step 3"):
        trainer.fit(model, datamodule=datamodule)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert _ckpt_step(last) == 3
    saved = torch.load(last, weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())
    live = model.state_dict()  # the step raised before backward: the network in memory is still step 3's
    assert all(torch.equal(saved[k], live[k]) for k in saved if k.startswith("net."))
    message = caplog.text
    assert "Training stopped at global step 3" in message
    assert "NaN/inf values in: batch['lq']" in message
    assert f"Last good checkpoint: {last} (global step 3)" in message and f"ckpt_path={last}" in message
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))


class _TinyRegression(L.LightningModule):
    """A module that does not check its loss itself (DiffUIR does): the callback must catch it before backward."""

    def __init__(self, nan_at: int):
        super().__init__()
        self.layer, self.nan_at = torch.nn.Linear(4, 1), nan_at

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        return loss * float("inf") if self.global_step == self.nan_at else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g))
        return DataLoader(data, batch_size=4)


def _tiny_trainer(tmp_path, callbacks, steps=6):
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=-1, every_n_train_steps=1)
    return L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=[*callbacks, ckpt], default_root_dir=tmp_path)


def test_inf_loss_from_any_module_is_caught_before_backward(tmp_path):
    model = _TinyRegression(nan_at=2)
    trainer = _tiny_trainer(tmp_path, [FaultTolerance()])
    with pytest.raises(NonFiniteLossError, match="loss became inf at global step 2"):
        trainer.fit(model)
    assert torch.isfinite(model.layer.weight).all()
    assert _ckpt_step(tmp_path / "last.ckpt") == 2


def test_checkpoint_with_nan_weights_is_refused(tmp_path):
    cfg = _cfg(tmp_path, every=1)
    datamodule, model, trainer = build(cfg)
    trainer.callbacks.insert(0, PoisonWeights(3))
    with pytest.raises(NonFiniteWeightsError, match="net.head.bias"):
        trainer.fit(model, datamodule=datamodule)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert _ckpt_step(last) == 2
    assert not (tmp_path / "checkpoints" / "step_0000003.ckpt").exists()


# ------------------------------------------------------------------------------------------------ atomic checkpoints
def test_callback_installs_atomic_checkpoint_io(tmp_path):
    trainer = _tiny_trainer(tmp_path, [FaultTolerance()], steps=1)
    trainer.fit(_TinyRegression(nan_at=-1))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 1


def test_failed_checkpoint_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, target)

    def broken_save(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_leftover_temporaries_of_a_killed_run_are_removed_at_the_next_start(tmp_path, caplog):
    """A kill while saving leaves `.last.ckpt.<random>.tmp` (zero bytes or partial): the next start removes it
    from the folder of the checkpoint it resumes from and from its own checkpoint folder, and says so; a fresh
    temporary (another process may be writing it) and other hidden files are left alone."""
    first = tmp_path / "first"
    _fit(_cfg(first, every=2, steps=2))
    old_dir, new_dir = first / "checkpoints", tmp_path / "second" / "checkpoints"
    new_dir.mkdir(parents=True)
    stale = [old_dir / ".last.ckpt.uir-999999999-k3j_x9ab.tmp",
             old_dir / ".step_0000004.ckpt.uir-999999999-0a1b2c3d.tmp",
             new_dir / ".last.ckpt.uir-999999999-zz99yy88.tmp"]
    stale[0].write_bytes(b"")
    stale[1].write_bytes(b"PK\x03\x04partial")
    stale[2].write_bytes(b"")
    recent, foreign = old_dir / ".last.ckpt.uir-999999999-recent12.tmp", old_dir / ".notes.k3j_x9ab.tmp"
    recent.write_bytes(b"")
    foreign.write_text("a user's file")
    for p in [*stale, foreign]:
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    with caplog.at_level(logging.WARNING):
        _fit(_cfg(tmp_path / "second", every=2, steps=4), ckpt_path=old_dir / "last.ckpt")
    assert not any(p.exists() for p in stale)
    assert recent.exists() and foreign.exists()
    text = caplog.text
    assert "removed 3 leftover temporary file(s) of an interrupted run" in text
    assert "left 1 recent temporary file(s)" in text and str(recent) in text


# ------------------------------------------------------------------------------------------------ building blocks
def test_resumable_sampler_yields_randomsampler_order_and_resumes():
    data = list(range(10))
    torch.manual_seed(123)
    stock = list(RandomSampler(data))
    torch.manual_seed(123)
    sampler = ResumableRandomSampler(data)
    assert list(sampler) == stock
    sampler.arm(sampler.epoch_state(), 4)
    assert list(sampler) == stock[4:]
    seeded = ResumableRandomSampler(data, generator=torch.Generator().manual_seed(9))
    first = list(seeded)
    assert first == list(RandomSampler(data, generator=torch.Generator().manual_seed(9)))
    seeded.arm(seeded.epoch_state(), 7)
    assert list(seeded) == first[7:]
    sequential = ResumableSequentialSampler(data)
    sequential.arm(None, 6)
    assert list(sequential) == [6, 7, 8, 9] and list(sequential) == data
    loader = DataLoader(data, batch_size=3, shuffle=True, drop_last=True)
    assert type(loader.batch_sampler) is BatchSampler  # what the callback relies on to swap samplers


def test_rng_states_round_trip_weights_only(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    states = collect_rng_states()
    torch.save(states, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_fault_tolerant_preset_composes(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.callbacks.fault_tolerance._target_ == "src.utils.fault_tolerance.FaultTolerance"
    assert cfg.callbacks.model_checkpoint.save_last is True
