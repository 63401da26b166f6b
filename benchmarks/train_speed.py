"""CPU training throughput of the suite's own training (``python -m src.train``), contenders timed in alternation.

    python -m benchmarks.train_speed                      # -> experiments/bench/train_speed.{md,csv}

Each contender is a real ``src.train`` run of ``--experiment`` (default the demo, DiffUIR-T on 8 crops of 64² per
optimizer step) for ``--steps`` optimizer steps, with a callback (:class:`benchmarks.step_timer.StepTimer`) that
stamps the end of every step on global rank 0; samples/s is the global batch times the steps after ``--warmup``,
over their time (process start, data set-up and checkpoint writing excluded). Contenders (``--contenders``):

* ``one_proc_2t``: one process with two torch threads, batch 8 (the demo's recipe before; ``trainer=cpu``);
* ``ddp_2x1t``: two processes of one thread each under Lightning's DDP (gloo, ``trainer=ddp_cpu``), batch 4 per
  process = 8 per step: the same samples per step and the same model, two independent streams of small kernels;
* ``ddp_2x1t_cl``: the same with the network in channels-last memory format (``model.channels_last=true``);
* ``ddp_2x1t_b16``: ``ddp_2x1t`` with 8 crops per process (16 per step): what larger kernels per call give in
  samples/s (a different recipe: fewer, larger steps);
* ``ddp_2x1t_compile``: ``ddp_2x1t`` with the U-Net under ``torch.compile`` (``model.compile=true``; inductor's C++
  kernels; its compilation falls in the warm-up steps, not in samples/s);
* ``ddp_2x1t_bf16``: ``ddp_2x1t`` under bf16 autocast (``trainer.precision=bf16-mixed``; fp32 weights and optimizer):
  worth it only where the CPU multiplies bf16 natively (AMX or AVX512-BF16).

``--before COMMIT`` adds the suite as it was at COMMIT as the first contender (``before@COMMIT``: a detached git
worktree training ``--experiment`` with that commit's own recipe), so the speed-up column reads after vs before in one
alternated run. Issue 17's "today": ``--before 55941b7`` (the demo then: one process, two threads, 8 crops per step,
degradations synthesised in the training process).

``--breakdown`` instead times where one training process's step goes (issue 17 item 2: "measure first"): the
experiment's data, model and optimizer built from its config as ``src.train`` builds them, its per-process batch
and thread count, and per step the batch from the DataLoader (degradations synthesised in the process when
``num_workers`` is 0), the forward and loss, the backward, gradient clipping, the optimizer and the EMA, each a
median over ``--steps`` steps after ``--warmup``; then the operators that took most of the time under
``torch.profiler`` → ``OUT_breakdown.md``. Lightning's own hooks, logging and DDP's gradient all-reduce are not in it.

Rounds alternate the order (A B C, then C B A, ...); the speed-up is the median of the per-round ratios to the
first contender. Every row records the CPU, threads and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import worktree
from src.utils.csv_cells import write_rows

CONTENDERS = {
    "one_proc_2t": ["trainer=cpu", "num_threads=2", "data.batch_size=8"],
    "ddp_2x1t": ["trainer=ddp_cpu", "num_threads=1", "data.batch_size=4", "trainer.accumulate_grad_batches=1"],
    "ddp_2x1t_cl": ["trainer=ddp_cpu", "num_threads=1", "data.batch_size=4", "trainer.accumulate_grad_batches=1",
                    "+model.channels_last=true"],
    "ddp_2x1t_b16": ["trainer=ddp_cpu", "num_threads=1", "data.batch_size=8", "trainer.accumulate_grad_batches=1"],
    "ddp_2x1t_compile": ["trainer=ddp_cpu", "num_threads=1", "data.batch_size=4", "trainer.accumulate_grad_batches=1",
                         "+model.compile=true"],
    "ddp_2x1t_bf16": ["trainer=ddp_cpu", "num_threads=1", "data.batch_size=4", "trainer.accumulate_grad_batches=1",
                      "trainer.precision=bf16-mixed"],
}
GLOBAL_BATCH = {"one_proc_2t": 8, "ddp_2x1t": 8, "ddp_2x1t_cl": 8, "ddp_2x1t_b16": 16, "ddp_2x1t_compile": 8,
                "ddp_2x1t_bf16": 8}
WHERE: dict[str, tuple] = {}  # contender -> (checkout, PYTHONPATH, StepTimer target): before@COMMIT only


def add_before(commit: str, tmp: Path, batch: int) -> str:
    """Add the contender ``before@COMMIT``: the suite as it was at ``commit`` (a detached ``git worktree`` in
    ``tmp``), training ``--experiment`` with that commit's own recipe (no overrides); its global batch is ``batch``
    (the demo's was 8 per step before and is 8 now). A copy of :mod:`benchmarks.step_timer` goes on its path."""
    repo = Path(__file__).resolve().parents[1]
    tree = worktree.checkout(commit, tmp / "before")
    shim = tmp / "shim"
    shim.mkdir()
    shutil.copy(repo / "benchmarks" / "step_timer.py", shim / "uir_step_timer.py")
    name = f"before@{commit[:7]}"
    CONTENDERS[name], GLOBAL_BATCH[name] = [], batch
    WHERE[name] = (tree, str(shim), "uir_step_timer.StepTimer")
    return name


def remove_before(tmp: Path) -> None:
    worktree.remove(tmp / "before")


def run_contender(name: str, experiment: str, steps: int, warmup: int, workdir: Path) -> float:
    """Samples per second of one ``src.train`` run of contender ``name``."""
    stamps = workdir / f"{name}.json"
    cwd, path, timer = WHERE.get(name, (Path(__file__).resolve().parents[1], "", "benchmarks.step_timer.StepTimer"))
    cmd = [sys.executable, "-m", "src.train", f"experiment={experiment}", f"trainer.max_steps={steps}",
           "test=false", "logger=csv", f"paths.output_dir={workdir / name}",
           "callbacks.model_checkpoint.every_n_train_steps=1000000",
           f"+callbacks.step_timer._target_={timer}", f"+callbacks.step_timer.path={stamps}", *CONTENDERS[name]]
    if "time_budget_s" in (Path(cwd) / "conf" / "train.yaml").read_text():  # the option's older checkouts lack
        cmd.append("time_budget_s=null")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    if path:  # the older checkout: its own src (the working directory) and the timer's copy, nothing of today's
        env["PYTHONPATH"] = path
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0 or not stamps.is_file():
        raise RuntimeError(f"{name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    t = json.loads(stamps.read_text())
    if len(t) <= warmup + 1:
        raise RuntimeError(f"{name}: only {len(t)} steps recorded; raise --steps above --warmup + 1")
    return GLOBAL_BATCH[name] * (len(t) - 1 - warmup) / (t[-1] - t[warmup])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default="diffuir_t_demo")
    p.add_argument("--contenders", nargs="+", default=["one_proc_2t", "ddp_2x1t"], choices=list(CONTENDERS))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="experiments/bench/train_speed")
    p.add_argument("--before", metavar="COMMIT", help="also time the suite at COMMIT (its own recipe, in a git "
                   "worktree) as the first contender: the speed-up column is then after vs before")
    p.add_argument("--before-batch", type=int, default=8, help="the global batch of --before's recipe")
    p.add_argument("--breakdown", action="store_true", help="time the parts of one process's step instead "
                   "(data, forward, backward, clipping, optimizer, EMA) -> OUT_breakdown.md")
    args = p.parse_args(argv)
    if args.breakdown:
        import torch

        threads = torch.get_num_threads()
        try:
            rows, ops = step_breakdown(args.experiment, args.steps, args.warmup)
        finally:  # the experiment's num_threads applied to this process only while it ran
            torch.set_num_threads(threads)
        write_breakdown(args, rows, ops)
        return 0
    rows, per_round = [], []
    with tempfile.TemporaryDirectory(prefix="uir-train-speed-") as tmp:
        if args.before:
            args.contenders = [add_before(args.before, Path(tmp), args.before_batch), *args.contenders]
        try:
            per_round = time_rounds(args, Path(tmp), rows)
        finally:
            remove_before(Path(tmp))
    report(args, rows, per_round)
    return 0


def time_rounds(args, tmp: Path, rows: list) -> list[dict]:
    """``args.rounds`` alternated rounds of every contender; appends a row per run, returns samples/s per round."""
    per_round = []
    for r in range(args.rounds):
        order = args.contenders if r % 2 == 0 else list(reversed(args.contenders))
        got = {}
        for name in order:
            load0 = os.getloadavg()[0]
            sps = run_contender(name, args.experiment, args.steps, args.warmup, tmp / f"r{r}")
            got[name] = sps
            rows.append({"round": r, "contender": name, "samples_per_s": round(sps, 3),
                         "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)})
            print(f"round {r} {name:12s} {sps:6.2f} samples/s (load {load0:.2f})", flush=True)
        per_round.append(got)
    return per_round


PARTS = ("data", "forward + loss", "backward", "gradient clipping", "optimizer", "EMA")


def step_breakdown(experiment: str, steps: int, warmup: int, profiled: int = 5) -> tuple[list[dict], list[dict]]:
    """Median seconds of each of :data:`PARTS` of one process's training step of ``experiment`` (its config built as
    ``src.train`` builds it, its ``num_threads``), and the operators with the most self CPU time over ``profiled``
    more steps."""
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from torch.profiler import profile

    from src.utils.instantiate import set_threads

    root = Path(__file__).resolve().parents[1]
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
    set_threads(cfg.get("num_threads"))
    L.seed_everything(cfg.seed, verbose=False)
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    datamodule.setup("fit")
    optimizer = model.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    clip = cfg.trainer.get("gradient_clip_val")
    batches = iter(datamodule.train_dataloader())
    model.train()

    def step(stamps: list | None) -> None:
        t = [time.perf_counter()]
        batch = next(batches)
        t.append(time.perf_counter())
        loss = model.diffusion.loss(model.net, batch["gt"] * 2 - 1, batch["lq"] * 2 - 1)
        t.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.append(time.perf_counter())
        if clip:
            torch.nn.utils.clip_grad_norm_(model.net.parameters(), float(clip))
        t.append(time.perf_counter())
        optimizer.step()
        t.append(time.perf_counter())
        if model.ema is not None:
            model.ema.update(model.net)
        t.append(time.perf_counter())
        if stamps is not None:
            stamps.append([b - a for a, b in zip(t, t[1:])])

    times: list[list[float]] = []
    for i in range(warmup + steps):
        step(times if i >= warmup else None)
    with profile() as prof:
        for _ in range(profiled):
            step(None)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    ops = [{"operator": e.key, "ms_per_step": e.self_cpu_time_total / 1e3 / profiled,
            "share": e.self_cpu_time_total / total, "calls_per_step": e.count / profiled}
           for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]]
    rows = [{"part": part, "ms": 1e3 * statistics.median(t[i] for t in times)} for i, part in enumerate(PARTS)]
    facts = {"batch": tuple(next(batches)["gt"].shape), "threads": torch.get_num_threads(), "clip": clip}
    rows.append({"part": "step (sum of the medians)", "ms": sum(r["ms"] for r in rows), **facts})
    return rows, ops


def write_breakdown(args, rows: list[dict], ops: list[dict]) -> None:
    from benchmarks.diffuir_speed import cpu_model

    facts = rows[-1]
    out = Path(str(args.out) + "_breakdown.md")
    lines = [f"# Where one training process's step goes: {args.experiment} (`python -m benchmarks.train_speed "
             "--breakdown`)", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores, {facts['threads']} torch thread(s), batch "
             f"{'×'.join(map(str, facts['batch']))} per process, {time.strftime('%Y-%m-%d %H:%M')}, load "
             f"{os.getloadavg()[0]:.2f}. Medians over {args.steps} steps after {args.warmup} warm-up; Lightning's "
             "hooks, logging and DDP's all-reduce are not included.", "",
             "| part | ms per step | share |", "|---|---:|---:|"]
    lines += [f"| {r['part']} | {r['ms']:.1f} | {r['ms'] / facts['ms']:.0%} |" for r in rows]
    lines += ["", "Operators with the most self CPU time (torch.profiler, 5 more steps):", "",
              "| operator | ms per step | share | calls per step |", "|---|---:|---:|---:|"]
    lines += [f"| `{o['operator']}` | {o['ms_per_step']:.1f} | {o['share']:.0%} | {o['calls_per_step']:.0f} |"
              for o in ops]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def report(args, rows: list, per_round: list[dict]) -> None:
    """Write ``args.out``.csv/.md: median samples/s per contender and the median per-round ratio to the first."""
    from benchmarks.diffuir_speed import cpu_model

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


if __name__ == "__main__":
    sys.exit(main())
