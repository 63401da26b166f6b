"""GPU benchmark (issue 12 item 4): ``benchmarks/gpu.sh`` runs this on one H100/H200-class GPU in at most 8 minutes.

Writes ``OUT.csv`` / ``OUT.md`` (default ``experiments/bench/gpu``) with one row per measurement:

* ``train``: DiffUIR-L training throughput at 256² (samples/s; Adam steps of the Eq. 11 L1 loss, the network built
  by :class:`~src.diffuir.module.DiffUIRModule` with its ``channels_last`` / ``compile`` switches, fused Adam
  where named) for ``fp32``, ``bf16`` (autocast bf16-mixed), ``channels_last``, ``compile`` and all together
  (``bf16+channels_last+compile+fused_adam``, what ``trainer=gpu_fast`` trains with); the paper's goal ≥ 400
  samples/s on one H100 (the official code: ~22/s on an RTX 4090);
* ``sample``: DiffUIR-L 3-step sampler latency per image at 256² and 512² (batch 1; fp32, bf16, compile+bf16);
* ``diff_restorer``: Diff-Restorer stage 1 at 512² (UniPC, 20 steps, SD VAE decoder) with full-size randomly
  initialised SD-1.5-shaped U-Net and VAE and a ViT-L/14 CLIP tower (:mod:`src.diff_restorer.sd_loading`; the same
  compute as the released weights), latency and peak memory (``torch.cuda.max_memory_allocated``), fp32 and fp16.
  Goal ≤ 0.5 s per image (DiffBIR 2.7 s and PASD 2.8 s on an A100).

Latencies: median of ``--reps`` after warm-up (compile time excluded, reported separately as ``setup_s``). A
section that would overrun ``--budget-s`` is skipped with a note in its row. ``--smoke`` runs every section on
tiny sizes on the CPU (DiffUIR-T at 32², the tiny Diff-Restorer at 64², 2 UniPC steps, no compile), to check the
script end to end without a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from src.utils.csv_cells import write_rows

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "experiments" / "bench" / "gpu"
COLUMNS = ("run", "device", "torch", "section", "model", "res", "batch", "variant", "median_s", "min_s",
           "samples_per_s", "peak_mem_gb", "setup_s", "note")
TRAIN_VARIANTS = ("fp32", "bf16", "channels_last", "compile", "bf16+channels_last+compile+fused_adam")
SAMPLE_VARIANTS = ("fp32", "bf16", "bf16+compile")


class Budget:
    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, reps: int, warmup: int) -> tuple[float, float, float]:
    """(setup = warm-up seconds, median, min) of ``fn``."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    _sync(device)
    setup = time.perf_counter() - start
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return setup, statistics.median(times), min(times)


def _autocast(device: torch.device, variant: str, dtype=torch.bfloat16):
    if "bf16" in variant or "fp16" in variant:
        return torch.autocast(device.type, dtype=torch.float16 if "fp16" in variant else dtype)
    return contextlib.nullcontext()


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float | str:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else ""


# ------------------------------------------------------------------------------------------- DiffUIR
def train_row(size: str, res: int, batch: int, variant: str, device: torch.device, reps: int, warmup: int) -> dict:
    """Samples/s of DiffUIR training steps (loss, backward, clip 1.0, Adam) with the module's switches."""
    from src.diffuir.diffusion import ResidualDiffusion
    from src.diffuir.module import DiffUIRModule
    from src.diffuir.unet import DiffUIRUNet

    cl, comp = "channels_last" in variant, "compile" in variant
    torch.manual_seed(0)
    optimizer = functools.partial(torch.optim.Adam, lr=8e-5, betas=(0.9, 0.99), fused="fused_adam" in variant)
    module = DiffUIRModule(DiffUIRUNet.from_size(size), ResidualDiffusion(), optimizer=optimizer, ema=None,
                           channels_last=cl, compile=comp).to(device).train()
    opt = module.configure_optimizers()
    fmt = torch.channels_last if cl else torch.contiguous_format
    gt = (torch.rand(batch, 3, res, res, device=device) * 2 - 1).contiguous(memory_format=fmt)
    lq = (torch.rand(batch, 3, res, res, device=device) * 2 - 1).contiguous(memory_format=fmt)

    def step():
        with _autocast(device, variant):
            loss = module.diffusion.loss(module.net, gt, lq)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.net.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    _peak_reset(device)
    setup, med, low = timed(step, device, reps, warmup)
    return {"section": "train", "model": f"DiffUIR-{size}", "res": res, "batch": batch, "variant": variant,
            "median_s": round(med, 4), "min_s": round(low, 4), "samples_per_s": round(batch / med, 1),
            "peak_mem_gb": _peak_gb(device), "setup_s": round(setup, 1)}


def sample_row(size: str, res: int, variant: str, device: torch.device, reps: int, warmup: int) -> dict:
    """Latency of the released 3-step sampler, batch 1."""
    from src.diffuir.diffusion import ResidualDiffusion
    from src.diffuir.engines import fold_weight_standardization
    from src.diffuir.unet import DiffUIRUNet

    torch.manual_seed(0)
    net = fold_weight_standardization(DiffUIRUNet.from_size(size)).to(device)
    model = torch.compile(net) if "compile" in variant else net
    diffusion = ResidualDiffusion().to(device)
    lq = torch.rand(1, 3, res, res, device=device) * 2 - 1

    def sample():
        with torch.inference_mode(), _autocast(device, variant):
            return diffusion.sample(model, lq)

    _peak_reset(device)
    setup, med, low = timed(sample, device, reps, warmup)
    return {"section": "sample", "model": f"DiffUIR-{size}", "res": res, "batch": 1, "variant": variant,
            "median_s": round(med, 4), "min_s": round(low, 4), "samples_per_s": round(1 / med, 2),
            "peak_mem_gb": _peak_gb(device), "setup_s": round(setup, 1)}


# ------------------------------------------------------------------------------------------- Diff-Restorer
def build_diff_restorer(smoke: bool, device: torch.device):
    """Stage 1 as the paper configures it with random SD-1.5-shaped U-Net/VAE and a ViT-L/14 CLIP tower (built on
    ``device`` directly), or the tiny one with ``smoke``."""
    import open_clip
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    experiment = "diff_restorer_stage1_tiny" if smoke else "diff_restorer_stage1"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", "paths.output_dir=unused"])
    if not smoke:
        with open_dict(cfg):
            cfg.model.clip.weights = None
            cfg.model.unet = {"_target_": "src.diff_restorer.sd_loading.sd15_shaped_unet"}
            cfg.model.vae = {"_target_": "src.diff_restorer.sd_loading.sd15_shaped_vae"}
            cfg.model.clip.model_cfg = open_clip.get_model_config("ViT-L-14-quickgelu")
    with torch.device(device):
        model = instantiate(cfg.model)
    return model.to(device).eval()


def diff_restorer_rows(res: int, steps: int, variants: list[str], device: torch.device, reps: int, smoke: bool,
                       budget: Budget) -> list[dict]:
    start = time.perf_counter()
    model = build_diff_restorer(smoke, device)
    built = time.perf_counter() - start
    rows = []
    for variant in variants:
        if budget.left() < 30:
            rows.append({"section": "diff_restorer", "variant": variant, "note": "skipped: time budget spent"})
            continue
        lq = torch.rand(1, 3, res, res, device=device)

        def restore(variant=variant, lq=lq):
            with torch.inference_mode(), _autocast(device, variant):
                return model.restore(lq, steps=steps, generator=torch.Generator(device).manual_seed(0))

        _peak_reset(device)
        setup, med, low = timed(restore, device, reps, warmup=0 if smoke else 1)
        rows.append({"section": "diff_restorer", "model": "Diff-Restorer stage 1 (SD-1.5 shapes, random)"
                     if not smoke else "Diff-Restorer stage 1 (tiny)", "res": res, "batch": 1,
                     "variant": f"{variant}, UniPC {steps} steps", "median_s": round(med, 4), "min_s": round(low, 4),
                     "samples_per_s": round(1 / med, 2), "peak_mem_gb": _peak_gb(device),
                     "setup_s": round(setup + built, 1), "note": f"built in {built:.0f} s"})
    return rows


# ------------------------------------------------------------------------------------------- output
def to_markdown(rows: list[dict], facts: dict) -> str:
    lines = [f"# GPU benchmark (`benchmarks/gpu.sh`, run {facts['run']})", "",
             f"Device {facts['device']}, torch {facts['torch']}. Median of repetitions after warm-up (compile and "
             "warm-up in setup s).", "",
             "| section | model | res | batch | variant | median s | min s | samples/s | peak GB | setup s | note |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(k, "")) for k in COLUMNS[3:]) + " |")
    return "\n".join(lines) + "\n"


def write(rows: list[dict], facts: dict, out: Path) -> None:
    write_rows(out.with_suffix(".csv"), [{**facts, **r} for r in rows], COLUMNS)
    out.with_suffix(".md").write_text(to_markdown(rows, facts))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script end to end")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="OUT.csv and OUT.md are written (replaced)")
    parser.add_argument("--budget-s", type=float, default=450, help="skip what would run past this (default 450)")
    parser.add_argument("--train-batch", type=int, default=32, help="DiffUIR-L training batch (default 32)")
    parser.add_argument("--sections", nargs="+", default=["train", "sample", "diff_restorer"])
    args = parser.parse_args(argv)
    smoke = args.smoke
    budget = Budget(float("inf") if smoke else args.budget_s)  # the smoke check runs everything, however slow
    if not smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or pass --smoke for the CPU check")
    device = torch.device("cpu" if smoke else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 rows are true fp32
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    facts = {"run": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
             "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke)"}
    size, res, batch = ("T", 32, 2) if smoke else ("L", 256, args.train_batch)
    reps, warmup = (1, 0) if smoke else (10, 3)
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        print(" | ".join(f"{k}={row[k]}" for k in ("section", "model", "res", "variant", "median_s",
                                                    "samples_per_s", "peak_mem_gb", "setup_s") if k in row),
              flush=True)
        write(rows, facts, args.out)

    def guarded(section: str, variant: str, fn: Callable[[], dict]) -> None:
        if smoke and "compile" in variant:
            return add({"section": section, "variant": variant, "note": "skipped in --smoke (compile takes minutes "
                                                                         "on a CPU)"})
        if budget.left() < 20:
            return add({"section": section, "variant": variant, "note": "skipped: time budget spent"})
        try:
            add(fn())
        except torch.cuda.OutOfMemoryError as e:
            torch.cuda.empty_cache()
            add({"section": section, "variant": variant, "note": f"out of memory: {str(e)[:80]}"})

    if "train" in args.sections:
        for variant in TRAIN_VARIANTS:
            guarded("train", variant, lambda v=variant: train_row(size, res, batch, v, device, reps, warmup))
    if "sample" in args.sections:
        for sres in ((32, 64) if smoke else (256, 512)):
            for variant in SAMPLE_VARIANTS:
                guarded("sample", variant, lambda v=variant, r=sres: sample_row(size, r, v, device, reps, warmup))
    if "diff_restorer" in args.sections:
        if budget.left() < 90:
            add({"section": "diff_restorer", "note": "skipped: time budget spent"})
        else:
            for row in diff_restorer_rows(64 if smoke else 512, 2 if smoke else 20,
                                          ["fp32", "fp16"] if not smoke else ["fp32"], device,
                                          1 if smoke else 5, smoke, budget):
                add(row)
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.md')} "
          f"({time.perf_counter() - budget.start:.0f} s)")
    return rows


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(sys.argv[1:])
