"""How fast can any exact fp32 engine run DiffUIR's sampler on this CPU? ``python -m benchmarks.fp32_ceiling``.

Issue 18 asks every size at ≥ 2.5× the official sampler in fp32 (max abs diff ≤ 1e-4) at 256² and 512². An engine
that computes the convolutions directly (every fp32 engine on this stack: oneDNN on x86-64 and OpenVINO's CPU plugin
ship no Winograd or FFT convolution) must perform at least the sampler's convolution multiply-adds, and cannot
perform them faster than the CPU's fp32 fused-multiply-add peak. So, per round,

    ceiling = t_official × peak / conv_MACs

is an upper bound on the speed-up over the official code of any such engine (everything else in the network, the
norms, attention and element-wise work, taken as free). ``peak`` is measured, not read from a data sheet: a
4096² fp32 matrix product (PyTorch's BLAS) on the same threads, the best sustained multiply-add rate a library
reaches here. Each round times the official sampler, the suite's fp32 ``openvino`` engine and that product **in
alternation** (order reversed every other round), so the bound and the engine see the same load; the table gives
medians of the per-round ratios.

Needs a checkout of the official code (``--official``; see :mod:`benchmarks.engines`) and ``openvino``
(``pip install -e '.[fast]'``). Writes ``OUT.md`` and ``OUT.csv`` (default ``experiments/bench/fp32_ceiling``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.diffuir_speed import cpu_model
from benchmarks.engines import HOW_TO_GET, alternate, build_group, quartiles
from src.diffuir import engines as E
from src.diffuir.complexity import forward_macs_by_op
from src.diffuir.unet import SIZES
from src.utils.csv_cells import write_rows

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "experiments" / "bench" / "fp32_ceiling"
COLUMNS = ("run", "cpu", "cores", "threads", "mhz", "size", "res", "rounds", "conv_gmacs", "all_gmacs",
           "official_s", "engine", "engine_s", "gemm_n", "peak_gmacs_per_s", "engine_conv_share_of_peak",
           "official_gmacs_per_s", "engine_gmacs_per_s", "speedup", "speedup_q1", "speedup_q3", "ceiling",
           "ceiling_q1", "ceiling_q3", "target", "target_needs_gmacs_per_s", "load_before", "load_after")


def gemm(n: int):
    """A fp32 n×n by n×n matrix product (n³ multiply-adds) as a zero-argument call."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    return lambda: a @ b


def sampler_macs(net, res: int, steps: int = 3) -> tuple[int, int]:
    """(convolution MACs, all MACs) of a ``steps``-step sampling at ``res``²."""
    by_op = forward_macs_by_op(net, res, res)
    return steps * by_op.get("convolution", 0), steps * sum(by_op.values())


def ceiling_group(size: str, res: int, official: Path | None, rounds: int, engine: str = "openvino",
                  gemm_n: int = 4096, target: float = 2.5, seed: int = 0, reference: str = "official",
                  log=print) -> dict:
    """One row: the ``reference`` sampler (the official one; ``suite`` in the tests, which have no official
    checkout), ``engine`` and the matrix product timed in alternation on DiffUIR-``size`` at ``res``²."""
    load_before = os.getloadavg()[0]
    fns, _, _, net = build_group(size, res, [reference, engine], official, seed)
    fns["gemm"] = gemm(gemm_n)
    conv, total = sampler_macs(net, res)
    log(f"  DiffUIR-{size} {res}²: {conv / 1e9:.1f} GMAC of convolution per sampling; {rounds} alternated rounds ...")
    times = alternate(fns, rounds, warmup=1)
    peaks = [gemm_n ** 3 / t for t in times["gemm"]]
    speedups = [a / b for a, b in zip(times[reference], times[engine])]
    ceilings = [t * p / conv for t, p in zip(times[reference], peaks)]
    s1, s, s3 = quartiles(speedups)
    c1, c, c3 = quartiles(ceilings)
    official_s, engine_s = statistics.median(times[reference]), statistics.median(times[engine])
    peak = statistics.median(peaks)
    return {"size": size, "res": res, "rounds": rounds, "conv_gmacs": round(conv / 1e9, 2),
            "all_gmacs": round(total / 1e9, 2), "official_s": round(official_s, 4), "engine": engine,
            "engine_s": round(engine_s, 4), "gemm_n": gemm_n, "peak_gmacs_per_s": round(peak / 1e9, 1),
            "engine_conv_share_of_peak": round(conv / engine_s / peak, 3),
            "official_gmacs_per_s": round(total / official_s / 1e9, 1),
            "engine_gmacs_per_s": round(total / engine_s / 1e9, 1), "speedup": round(s, 3),
            "speedup_q1": round(s1, 3), "speedup_q3": round(s3, 3), "ceiling": round(c, 3), "ceiling_q1": round(c1, 3),
            "ceiling_q3": round(c3, 3), "target": target,
            "target_needs_gmacs_per_s": round(target * conv / official_s / 1e9, 1),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def cpu_mhz() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return line.split(":")[1].strip()
    except OSError:
        pass
    return ""


def to_markdown(rows: list[dict], facts: dict) -> str:
    lines = [f"# The fp32 ceiling: the best speed-up over the official sampler any direct-convolution engine could "
             f"reach here (`python -m benchmarks.fp32_ceiling`, run {facts['run']})", "",
             f"CPU {facts['cpu']} ({facts['mhz']} MHz reported), {facts['cores']} cores, {facts['threads']} threads. "
             "Per round, in alternation: the official 3-step sampler, the suite's fp32 engine and a fp32 matrix "
             f"product of {rows[0]['gemm_n'] if rows else 4096}² (its multiply-adds per second = the *peak*). "
             "Ceiling = t_official × peak / the sampler's convolution multiply-adds: an engine doing those "
             "convolutions directly, at the peak, with everything else free. Medians [IQR] of per-round ratios; "
             "GMAC/s of the samplers count all their multiply-adds (convolutions and attention).", "",
             "Engine's convolutions: their multiply-adds over the engine's whole time, as a share of the peak.", "",
             "| size | res | conv GMAC | official s (GMAC/s) | engine s (GMAC/s) | peak GMAC/s | engine's convolutions "
             "| engine speed-up | **ceiling** | 2.5× needs conv GMAC/s | load |",
             "|---|---:|---:|---|---|---:|---:|---|---|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['res']} | {r['conv_gmacs']} | {r['official_s']} ({r['official_gmacs_per_s']}) | "
            f"{r['engine_s']} ({r['engine_gmacs_per_s']}) | {r['peak_gmacs_per_s']} | "
            f"{100 * r['engine_conv_share_of_peak']:.0f} % of peak | {r['speedup']}× "
            f"[{r['speedup_q1']}–{r['speedup_q3']}] | **{r['ceiling']}×** [{r['ceiling_q1']}–{r['ceiling_q3']}] | "
            f"{r['target_needs_gmacs_per_s']} | {r['load_before']} → {r['load_after']} |")
    below = [f"{r['size']} at {r['res']}²" for r in rows if r["ceiling"] < r["target"]]
    lines += ["", ("Below the 2.5× target even at the ceiling: " + ", ".join(below) + ". There, only an algorithm "
                   "with fewer multiplications (Winograd, FFT) could reach it.") if below else
              "Every row's ceiling is above the 2.5× target."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, required=False, default=None,
                        help="path to a checkout of the official code (required)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--res", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engine", default="openvino", choices=[e for e in E.ENGINES if e != "openvino-bf16"],
                        help="the suite's exact engine to set beside the ceiling (default openvino)")
    parser.add_argument("--gemm-n", type=int, default=4096, help="side of the matrix product timed as the peak")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.official is None:
        parser.error("--official PATH is required: the ceiling is relative to the official sampler.\n" + HOW_TO_GET)
    if not (args.official / "src" / "model.py").is_file():
        parser.error(f"--official {args.official}: no src/model.py there; expected a checkout of the official code")
    if not E.available(args.engine):
        parser.error(f"engine {args.engine!r} not installed: pip install -e '.[fast]'")
    torch.set_num_threads(args.threads)
    facts = {"run": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cores": os.cpu_count(),
             "threads": args.threads, "mhz": cpu_mhz()}
    rows = []
    for res in args.res:
        for size in args.sizes:
            rows.append({**facts, **ceiling_group(size, res, args.official, args.rounds, args.engine, args.gemm_n)})
            write_rows(args.out.with_suffix(".csv"), rows, COLUMNS)  # after every group: partial runs count
            args.out.with_suffix(".md").write_text(to_markdown(rows, facts))
            print(to_markdown(rows[-1:], facts).split("\n\n")[3], flush=True)
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.md')}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
