"""DiffUIR's 3-step sampler side by side: ``python -m benchmarks.engines [--official PATH]``.

For each size and square resolution (batch 1), every contender restores the same image from the same start
noise with the same weights, timed **in alternation within one run**: round r calls the contenders in order
A B C … when r is even and … C B A when r is odd, so each sees the same machine load on average, and the
speed-up of a contender is the **median of its per-round ratios** (paired, robust to load that drifts) with
their interquartile range. Contenders:

* ``official``: the official code's ``ResidualDiffusion.sample`` (its ``UnetRes``, eager fp32; weight
  standardisation recomputed in every call) — only with ``--official PATH`` to a checkout of
  github.com/iSEE-Laboratory/DiffUIR (never copied here); without it this contender is skipped with a message;
* ``suite``: :class:`~src.diffuir.diffusion.ResidualDiffusion` with :class:`~src.diffuir.unet.DiffUIRUNet` as
  trained (eager fp32; standardised kernels cached at inference);
* ``suite-uncached``: the same with that cache off (the cached vs uncached comparison; ``--no-uncached`` drops it);
* the engines of :mod:`src.diffuir.engines` (``--engines``; default every installed one but ``compile``).

Reported per contender: median seconds per image, interquartile range and min–max, the speed-up over
``official`` (else over ``suite``), the max abs difference of the output to the official (else suite) output on
[0, 1] (fp32 paths: ≤ 1e-4 is the goal), and for inexact engines (bf16) the PSNR of the output against the fp32
reference. Every comparison group records the CPU model, the threads and the load average (os.getloadavg, 1 min)
before and after it. Each run writes its own ``OUT.csv`` and ``OUT.md`` (default ``experiments/bench/engines``),
replacing the previous run's: rows of different runs are never merged.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import io
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.diffuir_speed import cpu_model, ws_cache_disabled
from src.diffuir import engines as E
from src.diffuir.diffusion import ResidualDiffusion
from src.diffuir.official import convert_state_dict
from src.diffuir.unet import SIZES, DiffUIRUNet
from src.utils.csv_cells import write_rows

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "experiments" / "bench" / "engines"
OFFICIAL_REPO = "https://github.com/iSEE-Laboratory/DiffUIR"
HOW_TO_GET = (f"official code not given: skipping the official contender. To include it, check the official code "
              f"out OUTSIDE this repository and pass its path:\n  git clone {OFFICIAL_REPO} /work/official_diffuir\n"
              f"  .venv/bin/pip install -e '.[parity]'   # the packages its model.py imports\n"
              f"  python -m benchmarks.engines --official /work/official_diffuir")
COLUMNS = ("run", "cpu", "cores", "threads", "torch", "onnxruntime", "openvino", "size", "res", "contender", "exact",
           "rounds", "median_s", "q1_s", "q3_s", "min_s", "max_s", "reference", "speedup", "speedup_q1", "speedup_q3",
           "max_abs_diff", "psnr_vs_fp32_db", "setup_s", "load_before", "load_after")


# ------------------------------------------------------------------------------------------- the official code
def official_sampler(path: Path, size: str, net: DiffUIRUNet) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The official ``ResidualDiffusion`` (test.py's settings: pred_res, 3 steps, sum_scale 0.01, delta_end 1.8e-3)
    holding ``net``'s weights; returns ``restore(lq in [0, 1], seed) → output in [0, 1]``."""
    from benchmarks.official_parity import load_official  # imports an official checkout's src/model.py

    off = load_official(path)
    unet = off.UnetRes(dim=SIZES[size]["dim"], dim_mults=tuple(SIZES[size]["dim_mults"]), num_unet=1, condition=True,
                       objective="pred_res", test_res_or_noise="res")
    ours = net.state_dict()
    mapped = {k: ours[next(iter(convert_state_dict({k: v})))] for k, v in unet.unet0.state_dict().items()}
    unet.unet0.load_state_dict(mapped, strict=True)
    diffusion = off.ResidualDiffusion(unet, image_size=64, timesteps=1000, delta_end=1.8e-3, sampling_timesteps=3,
                                      objective="pred_res", loss_type="l1", condition=True, sum_scale=0.01,
                                      test_res_or_noise="res").eval()

    def restore(lq: torch.Tensor, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)  # its start noise: torch.randn(shape) from the global generator
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar over the 3 steps
            return diffusion.sample(lq, batch_size=lq.shape[0])[-1]

    return restore


# ------------------------------------------------------------------------------------------- timing
def alternate(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each call, in rounds whose order alternates (A B C, C B A, A B C, ...)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3); with fewer than 4 values q1/q3 are the min/max."""
    if len(xs) < 4:
        return min(xs), statistics.median(xs), max(xs)
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _version(package: str) -> str:
    if importlib.util.find_spec(package) is None:
        return ""
    from importlib.metadata import version

    with contextlib.suppress(Exception):
        return version(package)
    return "?"


# ------------------------------------------------------------------------------------------- one comparison
def build_group(size: str, res: int, contenders: list[str], official: Path | None, seed: int = 0):
    """The contenders of one group on DiffUIR-``size`` at ``res``² (random weights from ``seed``, one input, one
    start noise): ``(fns, setup_s, exact, net)``, ``fns[name]()`` restoring the image to [0, 1]."""
    torch.manual_seed(seed)
    net = DiffUIRUNet.from_size(size).eval()
    diffusion = ResidualDiffusion(sampling_steps=3)
    gen = torch.Generator().manual_seed(seed + 1)
    lq = torch.rand(1, 3, res, res, generator=gen)
    torch.manual_seed(seed + 2)
    noise = torch.randn(1, 3, res, res)  # = the official sampler's first draw after manual_seed(seed + 2)

    def suite(model):
        return lambda: (diffusion.sample(model, lq * 2 - 1, noise=noise) + 1) / 2

    def uncached():
        with ws_cache_disabled(net):
            return suite(net)()

    fns: dict[str, Callable[[], torch.Tensor]] = {}
    setup: dict[str, float] = {}
    exact: dict[str, bool] = {}
    onnx_bytes = None
    for name in contenders:
        start = time.perf_counter()
        if name == "official":
            restore = official_sampler(official, size, net)
            fns[name] = lambda restore=restore: restore(lq, seed + 2)
        elif name == "suite":
            fns[name] = suite(net)
        elif name == "suite-uncached":
            fns[name] = uncached
        else:
            kwargs = {}
            if name in ("onnx", "openvino", "openvino-bf16"):
                onnx_bytes = onnx_bytes or E.export_onnx(net)
                kwargs["model"] = onnx_bytes
            engine = E.build_engine(net, name, **kwargs)
            fns[name] = suite(engine)
            exact[name] = engine.exact
        setup[name] = time.perf_counter() - start
    return fns, setup, exact, net


def compare(size: str, res: int, contenders: list[str], official: Path | None, rounds: int, seed: int = 0,
            log=print) -> list[dict]:
    """One group: every contender on DiffUIR-``size`` at ``res``², timed in alternation; a row per contender."""
    load_before = os.getloadavg()[0]
    fns, setup, exact, _ = build_group(size, res, contenders, official, seed)
    outputs = {name: fn() for name, fn in fns.items()}  # also the warm-up (OpenVINO compiles the shape here)
    log(f"  DiffUIR-{size} {res}²: {len(fns)} contenders warmed up, timing {rounds} alternating rounds ...")
    times = alternate(fns, rounds, warmup=0)
    load_after = os.getloadavg()[0]
    ref = "official" if "official" in fns else "suite"
    fp32 = outputs[ref]
    rows = []
    for name, ts in times.items():
        q1, med, q3 = quartiles(ts)
        ratios = [a / b for a, b in zip(times[ref], ts)]
        r1, rmed, r3 = quartiles(ratios)
        is_exact = exact.get(name, True)
        rows.append({
            "size": size, "res": res, "contender": name, "exact": is_exact, "rounds": len(ts),
            "median_s": round(med, 4), "q1_s": round(q1, 4), "q3_s": round(q3, 4), "min_s": round(min(ts), 4),
            "max_s": round(max(ts), 4), "reference": ref, "speedup": round(rmed, 3), "speedup_q1": round(r1, 3),
            "speedup_q3": round(r3, 3), "max_abs_diff": f"{float((outputs[name] - fp32).abs().max()):.2e}",
            "psnr_vs_fp32_db": "" if is_exact else round(psnr(outputs[name], fp32), 2),
            "setup_s": round(setup[name], 2), "load_before": round(load_before, 2), "load_after": round(load_after, 2),
        })
    return rows


# ------------------------------------------------------------------------------------------- where time goes
def profile_openvino(size: str, res: int, threads: int, forward_calls: int = 3, seed: int = 0) -> list[dict]:
    """OpenVINO's own per-node timings (PERF_COUNT) of one forward of DiffUIR-``size`` at ``res``², for the graph
    exported from the trained blocks and from :mod:`src.diffuir.inference_forms`: milliseconds per node type
    (median over ``forward_calls`` forwards after a warm-up), and the forward's wall time."""
    import numpy as np
    import openvino as ov

    torch.manual_seed(seed)
    net = DiffUIRUNet.from_size(size).eval()
    x = np.random.default_rng(seed).standard_normal((1, net.in_channels, res, res)).astype(np.float32)
    t = np.full((1,), 500.0, np.float32)
    core, rows = ov.Core(), []
    for forms in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "net.onnx"
            path.write_bytes(E.export_onnx(net, inference_forms=forms))
            model = core.read_model(str(path))
        model.reshape({"x": list(x.shape), "t": [1]})
        request = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True,
                                                    "INFERENCE_PRECISION_HINT": "f32",
                                                    "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
        request.infer({"x": x, "t": t})
        per_type: dict[str, list[float]] = {}
        walls = []
        for _ in range(forward_calls):
            start = time.perf_counter()
            request.infer({"x": x, "t": t})
            walls.append(time.perf_counter() - start)
            totals: dict[str, float] = {}
            for node in request.get_profiling_info():
                totals[node.node_type] = totals.get(node.node_type, 0.0) + node.real_time.total_seconds() * 1e3
            for k, v in totals.items():
                per_type.setdefault(k, []).append(v)
        graph = "inference forms" if forms else "trained forms"
        rows.append({"size": size, "res": res, "graph": graph, "node": "forward (wall)",
                     "ms": round(1e3 * statistics.median(walls), 1)})
        rows += [{"size": size, "res": res, "graph": graph, "node": k, "ms": round(statistics.median(v), 1)}
                 for k, v in sorted(per_type.items(), key=lambda kv: -statistics.median(kv[1])) if
                 statistics.median(v) >= 1.0]
    return rows


def profile_markdown(rows: list[dict], facts: dict) -> str:
    lines = [f"# Where OpenVINO's time goes, one DiffUIR forward (`python -m benchmarks.engines --profile`, run "
             f"{facts['run']})", "", f"CPU {facts['cpu']}, {facts['threads']} threads, OpenVINO {facts['openvino']}, "
             "fp32, batch 1. Milliseconds per node type (OpenVINO PERF_COUNT, median of 3 forwards; types under 1 ms "
             "left out). *Trained forms*: the ONNX graph of the network as trained (GroupNorm and linear attention "
             "reshape the feature map); *inference forms*: `src/diffuir/inference_forms.py` "
             "(`ConvolutionBackpropData`: the upsampling as a transposed convolution). `Reorder` is layout "
             "conversion.", "", "| size | res | graph | node type | ms |", "|---|---:|---|---|---:|"]
    lines += [f"| {r['size']} | {r['res']} | {r['graph']} | {r['node']} | {r['ms']} |" for r in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- output
def to_markdown(rows: list[dict], facts: dict) -> str:
    lines = [f"# DiffUIR 3-step sampler, side by side (`python -m benchmarks.engines`, run {facts['run']})", "",
             f"CPU {facts['cpu']}, {facts['cores']} cores, {facts['threads']} threads (torch, onnxruntime and "
             f"OpenVINO alike), torch {facts['torch']}, onnxruntime {facts['onnxruntime'] or '—'}, OpenVINO "
             f"{facts['openvino'] or '—'}. Batch 1, random weights (same in every contender), same input and start "
             "noise. Contenders of one group are timed in alternation (order reversed every round); seconds per "
             "image: median [IQR] (min–max). Speed-up: median [IQR] of the per-round ratios reference / contender. "
             "Max abs diff: to the reference output on [0, 1]. PSNR: bf16 output against the fp32 reference. "
             "Load: 1-min load average before → after the group (2 cores: above 2 the cores were shared).", "",
             "| size | res | contender | s / image | speed-up vs reference | max abs diff | PSNR vs fp32 | setup s "
             "| load |", "|---|---:|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        ref = "—" if r["contender"] == r["reference"] else (
            f"**{r['speedup']}×** [{r['speedup_q1']}–{r['speedup_q3']}] vs {r['reference']}")
        lines.append(f"| {r['size']} | {r['res']} | {r['contender']} | {r['median_s']} [{r['q1_s']}–{r['q3_s']}] "
                     f"({r['min_s']}–{r['max_s']}) | {ref} | {r['max_abs_diff']} | "
                     f"{r['psnr_vs_fp32_db'] or '—'} | {r['setup_s']} | {r['load_before']} → {r['load_after']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["T", "S", "B", "L"], choices=list(SIZES))
    parser.add_argument("--res", nargs="+", type=int, default=[256], help="square resolutions (default 256)")
    parser.add_argument("--engines", nargs="+", default=None, choices=list(E.ENGINES),
                        help="engines to time (default: every installed one except compile)")
    parser.add_argument("--official", type=Path, default=None, help="path to a checkout of the official code")
    parser.add_argument("--no-uncached", action="store_true", help="leave out suite-uncached")
    parser.add_argument("--no-suite", action="store_true",
                        help="leave out the suite's PyTorch sampler (as slow as the official one; needs --official)")
    parser.add_argument("--detail-sizes", nargs="*", default=["T"], choices=list(SIZES),
                        help="sizes that also get suite-uncached (default T: it is as slow as suite, and a shared "
                             "CPU makes every slow contender expensive)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every contender (default 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="OUT.csv and OUT.md are written (replaced)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing samplers: OpenVINO's per-node-type times of one forward, graph of the "
                             "trained forms vs the inference forms (writes OUT_profile.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.profile:
        if not E.available("openvino"):
            parser.error("--profile needs openvino: pip install -e '.[fast]'")
        facts = {"run": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "threads": args.threads,
                 "openvino": _version("openvino")}
        rows = [r for res in args.res for size in args.sizes for r in profile_openvino(size, res, args.threads)]
        text = profile_markdown(rows, facts)
        path = args.out.parent / f"{args.out.name}_profile.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(text + f"\nwrote {path}")
        return rows
    engines = args.engines or [e for e in E.ENGINES if e not in ("compile", "eager") and E.available(e)]
    missing = [e for e in engines if not E.available(e)]
    if missing:
        parser.error(f"engine(s) {missing} not installed: pip install -e '.[fast]'")
    if args.no_suite and args.official is None:
        parser.error("--no-suite needs --official (a reference to compare with)")
    contenders = [*([] if args.no_suite else ["suite"]), *engines]
    if args.official is None:
        print(HOW_TO_GET, flush=True)
    elif not (args.official / "src" / "model.py").is_file():
        parser.error(f"--official {args.official}: no src/model.py there; expected a checkout of {OFFICIAL_REPO}")
    else:
        contenders.insert(0, "official")
    facts = {"run": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cores": os.cpu_count(),
             "threads": args.threads, "torch": torch.__version__, "onnxruntime": _version("onnxruntime"),
             "openvino": _version("openvino")}
    rows = []
    for res in args.res:
        for size in args.sizes:
            chosen = list(contenders)
            if size in args.detail_sizes and "suite" in chosen:
                at = chosen.index("suite") + 1
                chosen[at:at] = [] if args.no_uncached else ["suite-uncached"]
            rows += [{**facts, **r} for r in compare(size, res, chosen, args.official, args.rounds)]
            write_rows(args.out.with_suffix(".csv"), rows, COLUMNS)  # after every group: partial runs count
            args.out.with_suffix(".md").write_text(to_markdown(rows, facts))
            print(to_markdown([r for r in rows if r["size"] == size and r["res"] == res], facts).split("\n\n")[-1],
                  flush=True)
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.md')}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
