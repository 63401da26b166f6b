"""PyTorch's own CPU paths for one DiffUIR forward, side by side: ``python -m benchmarks.torch_compile_cpu``.

Contenders (all fp32, weight standardisation folded, same weights and input), timed in alternation with the order
reversed every round: ``eager`` (NCHW), ``eager-channels-last``, ``compile`` (inductor with weight freezing,
channels-last: the settings PyTorch recommends for CPU inference) and, when installed, the ``openvino`` engine
(what ``--engine auto`` runs). Reports median [min–max] ms per forward, the paired speed-up over eager, the max
abs difference to eager, the compile time, machine, threads and load; writes ``OUT.md`` (replaced).
This is the measurement behind the README's note that ``torch.compile`` is not the CPU default.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.diffuir_speed import cpu_model
from benchmarks.engines import alternate
from src.diffuir import engines as E
from src.diffuir.unet import SIZES, DiffUIRUNet

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="L", choices=list(SIZES))
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "experiments" / "bench" / "torch_compile_cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    torch.manual_seed(0)
    net = DiffUIRUNet.from_size(args.size).eval()
    folded = E.fold_weight_standardization(net)
    x = torch.rand(1, net.in_channels, args.res, args.res) * 2 - 1
    t = torch.full((1,), 500.0)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    folded_cl = E.fold_weight_standardization(net).to(memory_format=torch.channels_last)
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # constant weights folded into the compiled graph (inference only)
    compiled = torch.compile(E.fold_weight_standardization(net).to(memory_format=torch.channels_last))
    fns = {"eager": lambda: folded(x, t), "eager-channels-last": lambda: folded_cl(x_cl, t),
           "compile": lambda: compiled(x_cl, t)}
    setup = {}
    if E.available("openvino"):
        start = time.perf_counter()
        engine = E.build_engine(net, "openvino")
        fns["openvino"] = lambda: engine(x, t)
        setup["openvino"] = time.perf_counter() - start
    with torch.inference_mode():
        outputs = {}
        for name, fn in fns.items():
            start = time.perf_counter()
            print(f"warm-up {name} ...", flush=True)
            outputs[name] = fn().float()
            setup[name] = setup.get(name, 0.0) + time.perf_counter() - start
        times = alternate(fns, args.rounds, warmup=0)
    load_after = os.getloadavg()[0]
    rows = []
    for name, ts in times.items():
        ratios = [a / b for a, b in zip(times["eager"], ts)]
        rows.append({"contender": name, "median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts),
                     "max_ms": 1e3 * max(ts), "speedup": statistics.median(ratios),
                     "max_abs_diff": float((outputs[name] - outputs["eager"]).abs().max()), "setup_s": setup[name]})
    lines = [f"# One DiffUIR-{args.size} forward at {args.res}², PyTorch CPU paths (`python -m "
             f"benchmarks.torch_compile_cpu`, run {dt.datetime.now():%Y-%m-%d %H:%M})", "",
             f"CPU {cpu_model()}, {args.threads} threads, torch {torch.__version__}, batch 1, fp32, {args.rounds} "
             f"alternated rounds (order reversed every round), load {load_before:.2f} → {load_after:.2f}. "
             "Speed-up: median of the per-round ratios eager / contender. Setup: first call (compiling).", "",
             "| contender | ms per forward: median [min–max] | speed-up vs eager | max abs diff | setup s |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {r['contender']} | {r['median_ms']:.0f} [{r['min_ms']:.0f}–{r['max_ms']:.0f}] | "
              f"{r['speedup']:.2f}× | {r['max_abs_diff']:.1e} | {r['setup_s']:.1f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    print(text + f"\nwrote {args.out.with_suffix('.md')}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
