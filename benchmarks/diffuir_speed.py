"""DiffUIR speed, memory and size: ``python -m benchmarks.diffuir_speed`` → ``experiments/bench/diffuir_speed.csv``.

For each device (CPU always; CUDA when present), variant, model size and square resolution:

* ``params``; ``gmacs_forward`` (multiply-accumulates of one forward pass, PyTorch's FlopCounterMode through
  :func:`src.diffuir.complexity.forward_macs`; **MACs**, so FLOPs = 2 × MACs, also given as ``gflops_forward``),
  ``gmacs_sampling`` (the 3-step sampler: 3 forward passes);
* ``forward_ms``: latency of one network forward pass per image (batch 1, median of ``--reps`` after ``--warmup``);
* ``sampling_ms``: latency of the full released sampler per image (3 steps: start, 3 network calls, updates);
* ``peak_mem_forward_mb`` / ``peak_mem_sampling_mb`` / ``peak_mem_train_mb``: on CUDA the peak of
  ``torch.cuda.max_memory_allocated`` during the call (weights included); on CPU the increase of the process's
  peak resident set size over the call (Linux: ``VmHWM`` after resetting it through ``/proc/self/clear_refs``,
  with glibc's mmap threshold at 128 KiB during that call so that freed tensors leave the resident set; see
  :func:`exact_rss`) — column ``mem_method`` says which;
* ``train_samples_per_s`` (rows at ``--train-res``, 256 by default, the training crop): optimiser steps of the
  Eq. 11 L1 loss with Adam at batch ``--train-batch``, samples per second (median step time).

Variants (``--variants``; a ``+`` combines): ``fp32``; ``bf16`` (``torch.autocast`` bfloat16); ``channels_last``
(network and inputs in channels-last memory format); ``compile`` (``torch.compile`` of the network, default
mode; compile time is excluded by the warm-up). CPU default: fp32 only; CUDA default: every single option and
all three together, each measured.

``--compare-uncached`` adds, per device, size and resolution, the fp32 sampler with the weight-standardisation
cache of :class:`~src.diffuir.blocks.WeightStandardizedConv2d` disabled (variant ``fp32+ws_uncached``): the
standardised 3×3 kernels are then recomputed in every forward pass, as the official DiffUIR code does. The
official code itself is not shipped here, so this is the comparison on offer: the suite's sampler with and
without that one difference. The two are timed in alternation with the order reversed every round (same machine
load); the cached timings of that run are in ``cached_forward_ms`` / ``cached_sampling_ms`` of the
``fp32+ws_uncached`` row and ``uncached_over_cached`` is the median of the per-round ratios of the 3-step times.
The official code, and the inference engines, are compared side by side by ``benchmarks/engines.py``.

Latencies are the median of ``--reps`` (``*_min``: the fastest, less sensitive to other load on the machine).

Each run replaces the CSV and ``experiments/bench/diffuir_speed.md`` (rows of different runs are never merged),
each row describing its machine (CPU model, cores, torch threads, torch version, GPU, 1-min load average before
and after the row).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from src.diffuir.blocks import WeightStandardizedConv2d
from src.diffuir.complexity import count_params, forward_macs
from src.diffuir.diffusion import ResidualDiffusion
from src.diffuir.unet import SIZES, DiffUIRUNet
from src.utils.csv_cells import write_rows

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "experiments" / "bench" / "diffuir_speed.csv"
SAMPLING_STEPS = 3
COLUMNS = (
    "date", "device", "device_name", "cpu", "cores", "threads", "torch", "load_1m", "variant", "size", "res", "params",
    "gmacs_forward", "gflops_forward", "gmacs_sampling", "forward_ms", "forward_ms_min", "sampling_ms",
    "sampling_ms_min", "cached_forward_ms", "cached_sampling_ms", "uncached_over_cached", "peak_mem_forward_mb",
    "peak_mem_sampling_mb", "peak_mem_train_mb", "mem_method", "train_batch", "train_samples_per_s", "reps",
    "load_after",
)
VARIANT_OPTIONS = ("fp32", "bf16", "channels_last", "compile", "ws_uncached")
CPU_MEM = "cpu: peak RSS increase over the call (VmHWM reset via /proc/self/clear_refs; glibc mmap threshold 128 KiB)"
CUDA_MEM = "cuda: torch.cuda.max_memory_allocated during the call (weights included)"


# ------------------------------------------------------------------------------------------- the machine
def _amd_core(family: int, model: int) -> str:
    """AMD's core generation from /proc/cpuinfo's family and model (a VM often names only "AMD EPYC")."""
    if family == 26:
        return "Zen 5"
    if family == 25:
        return "Zen 4" if model in range(0x10, 0x20) or model in range(0x60, 0x80) or model in range(0xA0, 0xB0) \
            else "Zen 3"
    return "Zen / Zen 2" if family == 23 else ""


def cpu_model() -> str:
    """The CPU's model name, with AMD's core generation (Zen 4 / Zen 5 ...) from its family and model: the same
    2-core VM lands on different hosts, and vector throughput differs between them."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
            if not line.strip():
                break
    name = info.get("model name") or platform.processor() or platform.machine()
    with contextlib.suppress(ValueError):
        family, model = int(info.get("cpu family", "")), int(info.get("model", ""))
        core = _amd_core(family, model) if info.get("vendor_id") == "AuthenticAMD" else ""
        name += f" (family {family} model {model}{': ' + core if core else ''})"
    return name


def machine(device: str) -> dict:
    """Facts about the machine and device stored in every row."""
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "device": device, "device_name": name,
            "cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__ + (f" (CUDA {torch.version.cuda})" if device == "cuda" else ""),
            "load_1m": f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""}


# ------------------------------------------------------------------------------------------- measuring
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _vm(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _mallopt(mmap_threshold: int, trim_threshold: int) -> bool:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, mmap_threshold)) and bool(libc.mallopt(m_trim_threshold,
                                                                                         trim_threshold))
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def exact_rss() -> Iterator[bool]:
    """glibc: while active, every allocation above 128 KiB gets its own mapping, returned to the OS when freed,
    so freed tensors leave the resident set and the peak RSS of a call is its working set (by default glibc
    keeps large freed blocks after the first few, hiding later peaks). This makes allocation slow (a page fault
    per page), so it is only on while memory is measured; afterwards large blocks are served from the heap again
    (threshold 32 MiB, glibc's own steady state), which is what the latencies are measured with."""
    ok = _mallopt(1 << 17, 1 << 17)
    yield ok and _malloc_trim()
    _mallopt(32 << 20, 64 << 20)


def _malloc_trim() -> bool:
    """Return the heap's free memory to the OS (glibc ``malloc_trim(0)``)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def peak_memory_mb(fn: Callable[[], object], device: str) -> float | None:
    """Peak memory of one call of ``fn`` in MiB (see the module docstring for what is measured per device)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    with exact_rss() as exact:
        fn()  # once with the new thresholds, then what it left in the heap is trimmed, then measured
        if not exact or not _malloc_trim():
            return None
        before = _vm("VmRSS")
        if before is None or not _reset_peak_rss():
            return None
        fn()
        peak = _vm("VmHWM")
    return max(0, peak - before) / 2**20 if peak is not None else None


def time_rounds(fns: list[Callable[[], object]], device: str, reps: int, warmup: int) -> list[list[float]]:
    """Milliseconds of each call of each function, in rounds whose order alternates (A B, B A, A B, ...), so that
    the functions compared see the same machine load and neither always runs first."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for r in range(reps):
        order = list(zip(fns, times))
        for fn, ts in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            _sync(device)
            ts.append(1000 * (time.perf_counter() - start))
    return times


def time_ms(fns: list[Callable[[], object]], device: str, reps: int, warmup: int) -> list[tuple[float, float]]:
    """(median, min) milliseconds of each function, timed in alternation (:func:`time_rounds`)."""
    return [(statistics.median(ts), min(ts)) for ts in time_rounds(fns, device, reps, warmup)]


@contextlib.contextmanager
def ws_cache_disabled(net: torch.nn.Module) -> Iterator[None]:
    """Weight-standardised convolutions recompute their kernel in every call (the official code's behaviour)."""
    convs = [m for m in net.modules() if isinstance(m, WeightStandardizedConv2d)]

    def uncached(self, x):
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    for m in convs:
        m.forward = uncached.__get__(m)
    try:
        yield
    finally:
        for m in convs:
            del m.forward


def parse_variant(variant: str) -> set[str]:
    options = set(variant.split("+"))
    bad = options - set(VARIANT_OPTIONS)
    if bad:
        raise ValueError(f"unknown variant option(s) {sorted(bad)} in {variant!r}; options: {VARIANT_OPTIONS}")
    return options


def measure(size: str, res: int, device: str, variant: str, reps: int, warmup: int, train_batch: int,
            train: bool, seed: int = 0) -> dict:
    """One row: size, MACs, latencies, memory (and training throughput if ``train``)."""
    options = parse_variant(variant)
    torch.manual_seed(seed)
    net = DiffUIRUNet.from_size(size).eval()
    row: dict = {"variant": variant, "size": size, "res": res, "params": count_params(net), "reps": reps,
                 "mem_method": CUDA_MEM if device == "cuda" else CPU_MEM}
    macs = forward_macs(net, res, res)
    row.update(gmacs_forward=round(macs / 1e9, 3), gflops_forward=round(2 * macs / 1e9, 3),
               gmacs_sampling=round(SAMPLING_STEPS * macs / 1e9, 3))
    diffusion = ResidualDiffusion(sampling_steps=SAMPLING_STEPS).to(device)
    net = net.to(device)
    fmt = torch.channels_last if "channels_last" in options else torch.contiguous_format
    net = net.to(memory_format=fmt)
    model = torch.compile(net) if "compile" in options else net
    autocast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if "bf16" in options else contextlib.nullcontext

    def inputs(batch: int) -> torch.Tensor:
        return (torch.rand(batch, 3, res, res, device=device) * 2 - 1).contiguous(memory_format=fmt)

    x_in = inputs(1)
    x_net = torch.cat((x_in, x_in), dim=1).contiguous(memory_format=fmt)
    t = torch.full((1,), 500.0, device=device)

    @torch.inference_mode()
    def forward():
        with autocast():
            return model(x_net, t)

    @torch.inference_mode()
    def sampling():
        with autocast():
            return diffusion.sample(model, x_in)

    if "ws_uncached" in options:  # measured interleaved with the cached network: the comparison is the point

        def without_cache(fn):
            def call():
                with ws_cache_disabled(net):
                    return fn()
            return call

        fwd, ref_fwd = time_ms([without_cache(forward), forward], device, reps, warmup)
        smp_ts, ref_ts = time_rounds([without_cache(sampling), sampling], device, reps, warmup)
        smp, ref_smp = (statistics.median(smp_ts), min(smp_ts)), (statistics.median(ref_ts), min(ref_ts))
        row.update(cached_forward_ms=round(ref_fwd[0], 2), cached_sampling_ms=round(ref_smp[0], 2),
                   uncached_over_cached=round(statistics.median(a / b for a, b in zip(smp_ts, ref_ts)), 3))
        forward, sampling = without_cache(forward), without_cache(sampling)
    else:
        (fwd,), (smp,) = time_ms([forward], device, reps, warmup), time_ms([sampling], device, reps, warmup)
    row.update(forward_ms=round(fwd[0], 2), forward_ms_min=round(fwd[1], 2), sampling_ms=round(smp[0], 2),
               sampling_ms_min=round(smp[1], 2))
    row["peak_mem_forward_mb"] = _round(peak_memory_mb(forward, device))
    row["peak_mem_sampling_mb"] = _round(peak_memory_mb(sampling, device))
    if train:
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=8e-5, betas=(0.9, 0.99))
        gt, lq = inputs(train_batch), inputs(train_batch)

        def step():
            with autocast():
                loss = diffusion.loss(model, gt, lq)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        ((step_ms, _),) = time_ms([step], device, max(2, reps - 1), max(1, warmup))
        row.update(train_batch=train_batch, train_samples_per_s=round(train_batch / (step_ms / 1000), 3),
                   peak_mem_train_mb=_round(peak_memory_mb(step, device)))
    return row


def _round(x: float | None) -> float | str:
    return "" if x is None else round(x, 1)


# ------------------------------------------------------------------------------------------- output
def write_csv(path: Path, rows: list[dict]) -> Path:
    return write_rows(path, rows, COLUMNS)


def to_markdown(rows: list[dict]) -> str:
    """Tables of the CSV grouped by machine and device."""
    lines = ["# DiffUIR speed (`python -m benchmarks.diffuir_speed`)", "",
             "GMACs: multiply-accumulates (1 MAC = 2 FLOPs) counted by PyTorch's FlopCounterMode, every convolution "
             "included. Latencies per image at batch 1: median of the repetitions (fastest in brackets); 3-step = "
             "the released sampler. `fp32+ws_uncached`: weight-standardisation cache off, timed in alternation with "
             "the cached network (its timings in the 'cached, same run' column, then the median per-round ratio "
             "uncached / cached). Training: Adam steps of the L1 loss at the row's resolution. Load: the machine's "
             "1-minute load average before → after the row. One run per file: rows of different runs are never "
             "merged.", ""]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = tuple(str(r[k]) for k in ("device_name", "cpu", "cores", "threads", "torch", "mem_method"))
        groups.setdefault(key, []).append(r)
    for (device_name, cpu, cores, threads, version, mem), rs in groups.items():
        lines += [f"## {device_name} — CPU {cpu}, {cores} cores, {threads} torch thread(s), torch {version}", "",
                  f"Memory: {mem}.", "",
                  "| variant | size | res | params | GMACs fwd | GMACs 3-step | forward ms | 3-step ms | cached, same "
                  "run: fwd / 3-step ms | peak MB fwd | peak MB 3-step | train samples/s (batch) | peak MB train "
                  "| measured (load) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in sorted(rs, key=lambda r: (list(SIZES).index(r["size"]), int(r["res"]))):
            train = f"{r['train_samples_per_s']} ({r['train_batch']})" if r.get("train_samples_per_s") else ""
            cached = (f"{r['cached_forward_ms']} / {r['cached_sampling_ms']} (×{r['uncached_over_cached']})"
                      if r.get("cached_forward_ms") else "")
            lines.append(f"| {r['variant']} | {r['size']} | {r['res']} | {int(r['params']):,} | {r['gmacs_forward']} "
                         f"| {r['gmacs_sampling']} | {r['forward_ms']} ({r.get('forward_ms_min', '')}) | "
                         f"{r['sampling_ms']} ({r.get('sampling_ms_min', '')}) | {cached} | "
                         f"{r['peak_mem_forward_mb']} | {r['peak_mem_sampling_mb']} | {train} | "
                         f"{r.get('peak_mem_train_mb') or ''} | {r['date']} "
                         f"({r['load_1m']} → {r.get('load_after', '')}) |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["T", "S"], choices=list(SIZES),
                        help="model sizes (default T S; add B L for the larger ones)")
    parser.add_argument("--res", nargs="+", type=int, default=[256, 512], help="square resolutions (default 256 512)")
    parser.add_argument("--devices", nargs="+", default=None, choices=["cpu", "cuda"],
                        help="default: cpu, and cuda when available")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="default: fp32 on CPU; fp32 bf16 channels_last compile bf16+channels_last+compile on CUDA")
    parser.add_argument("--cpu-variants", nargs="+", default=["fp32"], help="variants on CPU when --variants is unset")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (median reported; default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1; compile needs >= 1)")
    parser.add_argument("--train-batch", type=int, default=2, help="training batch (default 2; the paper: 10)")
    parser.add_argument("--train-res", type=int, default=256, help="resolution of the training measurement")
    parser.add_argument("--no-train", action="store_true", help="skip the training throughput")
    parser.add_argument("--compare-uncached", action="store_true",
                        help="also the fp32 sampler with the weight-standardisation cache off (official behaviour)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"CSV written (replaced; default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--devices cuda: no CUDA device here")
    _mallopt(32 << 20, 64 << 20)  # large blocks from the heap from the start (see exact_rss)
    rows = []
    for device in devices:
        variants = args.variants or (args.cpu_variants if device == "cpu" else
                                     ["fp32", "bf16", "channels_last", "compile", "bf16+channels_last+compile"])
        if args.compare_uncached and "fp32+ws_uncached" not in variants:
            variants = [*variants, "fp32+ws_uncached"]
        for size in args.sizes:  # variants innermost: the ones compared run back to back
            for res in args.res:
                for variant in variants:
                    train = not args.no_train and res == args.train_res and "ws_uncached" not in variant
                    print(f"[{device}] {variant} DiffUIR-{size} {res}² ...", flush=True)
                    facts = machine(device)  # the load before this row
                    row = {**facts, **measure(size, res, device, variant, args.reps, args.warmup, args.train_batch,
                                              train), "load_after": f"{os.getloadavg()[0]:.2f}"}
                    print(f"    forward {row['forward_ms']} ms, 3-step {row['sampling_ms']} ms, "
                          f"{row['gmacs_forward']} GMACs/forward"
                          + (f", train {row['train_samples_per_s']} samples/s" if train else ""), flush=True)
                    rows.append(row)
    write_csv(args.out, rows)
    md = args.out.with_suffix(".md")
    md.write_text(to_markdown(rows))
    print(f"wrote {args.out} and {md}")
    return rows


if __name__ == "__main__":
    main()
