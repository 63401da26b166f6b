"""CPU training throughput of the suite's own training (``python -m src.train``), contenders timed in alternation.

    python -m benchmarks.train_speed                      # -> experiments/bench/train_speed.{md,csv}

Each contender is a real ``src.train`` run of ``--experiment`` (default the demo, DiffUIR-T on 8 crops of 64² per
optimizer step) for ``--steps`` optimizer steps, with a callback (:class:`StepTimer`) that stamps the end of every
step on global rank 0; samples/s is the global batch times the steps after ``--warmup``, over their time (process
start, data set-up and checkpoint writing excluded). Contenders (``--contenders``):

* ``one_proc_2t``: one process with two torch threads, batch 8 (the demo's recipe before; ``trainer=cpu``);
* ``ddp_2x1t``: two processes of one thread each under Lightning's DDP (gloo, ``trainer=ddp_cpu``), batch 4 per
  process = 8 per step: the same samples per step and the same model, two independent streams of small kernels;
* ``ddp_2x1t_cl``: the same with the network in channels-last memory format (``model.channels_last=true``);
* ``ddp_2x1t_b16``: ``ddp_2x1t`` with 8 crops per process (16 per step): what larger kernels per call give in
  samples/s (a different recipe: fewer, larger steps).

Rounds alternate the order (A B C, then C B A, ...); the speed-up is the median of the per-round ratios to the
first contender. Every row records the CPU, threads and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

from src.utils.csv_cells import write_rows

CONTENDERS = {
    "one_proc_2t": ["trainer=cpu", "num_threads=2", "data.batch_size=8"],
    "ddp_2x1t": ["trainer=ddp_cpu", "num_threads=1", "data.batch_size=4", "trainer.accumulate_grad_batches=1"],
    "ddp_2x1t_cl": ["trainer=ddp_cpu", "num_threads=1", "data.batch_size=4", "trainer.accumulate_grad_batches=1",
                    "+model.channels_last=true"],
    "ddp_2x1t_b16": ["trainer=ddp_cpu", "num_threads=1", "data.batch_size=8", "trainer.accumulate_grad_batches=1"],
}
GLOBAL_BATCH = {"one_proc_2t": 8, "ddp_2x1t": 8, "ddp_2x1t_cl": 8, "ddp_2x1t_b16": 16}


class StepTimer(L.Callback):
    """Writes the perf_counter time at the end of each training batch (global rank 0) to ``path`` as JSON."""

    def __init__(self, path: str):
        self.path, self.stamps = path, []

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if trainer.is_global_zero:
            self.stamps.append(time.perf_counter())

    def on_train_end(self, trainer, *args, **kwargs) -> None:
        if trainer.is_global_zero:
            Path(self.path).write_text(json.dumps(self.stamps))


def run_contender(name: str, experiment: str, steps: int, warmup: int, workdir: Path) -> float:
    """Samples per second of one ``src.train`` run of contender ``name``."""
    stamps = workdir / f"{name}.json"
    cmd = [sys.executable, "-m", "src.train", f"experiment={experiment}", f"trainer.max_steps={steps}",
           "test=false", "logger=csv", f"paths.output_dir={workdir / name}", "time_budget_s=null",
           "callbacks.model_checkpoint.every_n_train_steps=1000000",
           "+callbacks.step_timer._target_=benchmarks.train_speed.StepTimer",
           f"+callbacks.step_timer.path={stamps}", *CONTENDERS[name]]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not stamps.is_file():
        raise RuntimeError(f"{name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    t = json.loads(stamps.read_text())
    if len(t) <= warmup + 1:
        raise RuntimeError(f"{name}: only {len(t)} steps recorded; raise --steps above --warmup + 1")
    return GLOBAL_BATCH[name] * (len(t) - 1 - warmup) / (t[-1] - t[warmup])


def main(argv: list[str] | None = None) -> int:
    from benchmarks.diffuir_speed import cpu_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default="diffuir_t_demo")
    p.add_argument("--contenders", nargs="+", default=["one_proc_2t", "ddp_2x1t"], choices=list(CONTENDERS))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="experiments/bench/train_speed")
    args = p.parse_args(argv)
    rows, per_round = [], []
    with tempfile.TemporaryDirectory(prefix="uir-train-speed-") as tmp:
        for r in range(args.rounds):
            order = args.contenders if r % 2 == 0 else list(reversed(args.contenders))
            got = {}
            for name in order:
                load0 = os.getloadavg()[0]
                sps = run_contender(name, args.experiment, args.steps, args.warmup, Path(tmp) / f"r{r}")
                got[name] = sps
                rows.append({"round": r, "contender": name, "samples_per_s": round(sps, 3),
                             "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)})
                print(f"round {r} {name:12s} {sps:6.2f} samples/s (load {load0:.2f})", flush=True)
            per_round.append(got)
    base = args.contenders[0]
    out = Path(args.out)
    write_rows(out.with_suffix(".csv"), rows)
    lines = [f"# Training throughput: {args.experiment}, {args.steps} steps per run ({args.warmup} warm-up), "
             f"{args.rounds} alternated rounds", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores; `python -m benchmarks.train_speed` "
             f"({time.strftime('%Y-%m-%d %H:%M')}). Load average (1 min) per run in the CSV.", "",
             "| contender | samples/s median | min–max | speed-up vs " + base + " (median of per-round ratios) |",
             "|---|---:|---:|---:|"]
    for name in args.contenders:
        v = [g[name] for g in per_round]
        ratio = statistics.median(g[name] / g[base] for g in per_round)
        lines.append(f"| {name} | {statistics.median(v):.2f} | {min(v):.2f}–{max(v):.2f} | {ratio:.2f}× |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
