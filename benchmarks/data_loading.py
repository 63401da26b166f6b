"""Data-loading throughput of the two training pipelines against a GPU's appetite (issue 19, item 2).

    python -m benchmarks.data_loading          # -> experiments/bench/data_loading.csv and data_loading.md
    python -m benchmarks.data_loading --seconds 3 --pipelines diffuir --formats png

Samples/s per worker for the paper configs, on fake datasets whose images have real sizes (photo-like content,
:func:`src.data.fake_trees.photo_like`), PNG and JPEG:

* ``diffuir``: :class:`~src.data.datasets.DiffUIRTrainDataset` with the per-batch composition sampler (batch 10 of
  256² random crops from 0.3–2 MP images: read two files, crop, flips, histogram equalisation of low-light inputs);
* ``diff_restorer``: :class:`~src.data.datasets.DiffRestorerTrainDataset` with per-epoch balancing (batch 4, each
  image resized to 512² as the paper does, from 2–12 MP images; noise / JPEG synthesised for the clean sources).

``decode ms`` is the time to decode one source image alone (PIL), the part a pre-decoded format would remove.
The GPU side is an estimate from FLOPs (no GPU here; ``benchmarks/gpu.sh`` measures it where one is): training
FLOPs per sample counted with ``torch.utils.flop_counter`` on meta tensors (forward 2 FLOPs per multiply-add,
backward twice the forward for trained weights, once for frozen ones that gradients flow through), at an assumed
40% of the GPU's dense peak; workers needed = that rate / the slowest per-worker rate of the pipeline.

Each setting runs for ``--seconds`` after a warm-up of two batches (worker start-up excluded); the machine and its
load average when each setting started are in every row (other jobs on a shared machine take cores from workers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from src.data.balancing import BalancedTaskSampler, TaskCompositionSampler, task_pools, weights_vector
from src.data.datasets import DiffRestorerTrainDataset, DiffUIRTrainDataset, worker_init_fn
from src.data.fake_trees import photo_like
from src.data.manifests import Row
from src.utils.csv_cells import write_rows

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "bench" / "data_loading.csv"
# pipeline -> (training crop, {label: source image size (width, height)})
SOURCES = {
    "diffuir": (256, {"0.3MP": (640, 480), "0.9MP": (1280, 720), "2MP": (1920, 1080)}),
    "diff_restorer": (512, {"2.8MP": (2040, 1356), "12MP": (4000, 3000)}),
}
DIFFUIR_TASKS = ("haze", "low_light", "rain", "snow", "blur")
DR_PAIRED = ("low_light", "haze", "rain", "raindrop", "snow", "blur")
# dense peak TFLOPS (NVIDIA data sheets; A100 SXM, H100 SXM): fp32 runs as TF32 on these GPUs' tensor cores
GPUS = {"A100": {"tf32": 156, "bf16": 312}, "H100": {"tf32": 495, "bf16": 989}}
UTILISATION = 0.40


def machine() -> str:
    from benchmarks.diffuir_speed import cpu_model

    cpu = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}; {cores} usable cores; Python {platform.python_version()}; torch {torch.__version__}; "
            f"{platform.system()} {platform.release()}")


def make_fake_dataset(root: Path, pipeline: str, size: tuple[int, int], ext: str, pairs: int = 2,
                      seed: int = 0) -> list[Row]:
    """``pairs`` LQ/GT image pairs (and clean images) of ``size`` in format ``ext``, one row per task and pair."""
    rng = np.random.default_rng(seed)
    kw = {"quality": 95} if ext == "jpg" else {}
    files = []
    for i in range(pairs):
        for side in ("lq", "gt"):
            p = root / side / f"{i}.{ext}"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo_like(rng, size)).save(p, **kw)
        files.append((f"lq/{i}.{ext}", f"gt/{i}.{ext}"))
    tasks = DIFFUIR_TASKS if pipeline == "diffuir" else DR_PAIRED
    rows = [Row(lq, gt, t, t) for lq, gt in files for t in tasks]
    if pipeline == "diff_restorer":
        rows += [Row(None, gt, t, "DIV2K") for _, gt in files for t in ("noise", "jpeg")]
    return rows


def loader(pipeline: str, rows: list[Row], root: Path, crop: int, workers: int,
           shards: Path | None = None) -> DataLoader:
    """The pipeline's training loader; with ``shards``, images come from pre-decoded litdata shards."""
    if pipeline == "diffuir":
        ds = DiffUIRTrainDataset(rows, root, patch_size=crop)
        w = weights_vector({"haze": 0.4, "low_light": 0.1, "rain": 0.2, "snow": 0.2, "blur": 0.1})
        batch = 10
        sampler = TaskCompositionSampler(task_pools(ds.labels), w, batch, batches_per_epoch=100000)
    else:
        ds = DiffRestorerTrainDataset(rows, root, image_size=crop)
        batch = 4
        sampler = BalancedTaskSampler(task_pools(ds.labels), samples_per_task=50000)
    if shards is not None:
        from src.data.shards import ShardImages

        ds.images = ShardImages(shards)
    return DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True,
                      worker_init_fn=worker_init_fn)


def measure(dl: DataLoader, seconds: float) -> tuple[int, float]:
    it = iter(dl)
    for _ in range(2):  # warm-up: worker start-up, first reads
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += next(it)["lq"].shape[0]
    elapsed = time.perf_counter() - start
    del it
    return n, elapsed


def decode_ms(path: Path, reps: int = 3) -> float:
    """Median milliseconds to decode ``path`` to an RGB array."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        with Image.open(path) as im:
            np.asarray(im.convert("RGB"))
        times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[len(times) // 2]


# ------------------------------------------------------------------------------------------- the GPU's appetite
def _macs(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as c, torch.no_grad():
        fn()
    return c.get_total_flops() / 2


def training_gflops_per_sample() -> dict[str, dict]:
    """Training GFLOPs per sample of DiffUIR-L (256²) and Diff-Restorer stage 1 (512²), counted on meta tensors."""
    import open_clip
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from src.diff_restorer.control_decoder import ControlDecoder
    from src.diff_restorer.control_encoder import ControlEncoder
    from src.diff_restorer.control_module import ImageControlNetwork
    from src.diff_restorer.sd_loading import SD15_UNET_CONFIG, SD15_VAE_CONFIG
    from src.diffuir.unet import DiffUIRUNet

    with torch.device("meta"):
        net = DiffUIRUNet(dim=64, dim_mults=(1, 2, 4, 8))
        l_macs = _macs(lambda: net(torch.zeros(1, net.in_channels, 256, 256), torch.zeros(1)))
        unet, vae = UNet2DConditionModel(**SD15_UNET_CONFIG), AutoencoderKL(**SD15_VAE_CONFIG)
        ctrl = ImageControlNetwork.from_unet(unet, 256, load_weights_from_unet=False)
        enc, dec = ControlEncoder(256), ControlDecoder(256)
        clip = open_clip.create_model("ViT-L-14-quickgelu", device="meta").visual
        z, t, c = torch.zeros(1, 4, 64, 64), torch.zeros(1), torch.zeros(1, 1, 768)
        img, feats = torch.zeros(1, 3, 512, 512), torch.zeros(1, 256, 64, 64)
        m = {"unet": _macs(lambda: unet(z, t, c)), "controlnet": _macs(lambda: ctrl(z, t, c, feats)),
             "control_encoder": _macs(lambda: enc(img, torch.zeros(1, 256))),
             "control_decoder": _macs(lambda: dec(feats)),
             "vae_encoder": _macs(lambda: vae.encode(img)), "clip": _macs(lambda: clip(torch.zeros(1, 3, 224, 224)))}
    trained = m["controlnet"] + m["control_encoder"] + m["control_decoder"]
    # frozen forwards (U-Net, VAE encoder of the GT, CLIP of the LQ) + gradients through the frozen U-Net's
    # activations (about one forward) + forward and backward of the trained control module
    s1 = 2 * (m["unet"] + m["vae_encoder"] + m["clip"]) + 2 * m["unet"] + 6 * trained
    return {"diffuir": {"model": "DiffUIR-L, 256²", "gflops": 6 * l_macs / 1e9,
                        "detail": f"{l_macs / 1e9:.1f} GMACs forward × 6"},
            "diff_restorer": {"model": "Diff-Restorer stage 1, 512²", "gflops": s1 / 1e9,
                              "detail": ", ".join(f"{k} {v / 1e9:.0f}" for k, v in m.items()) + " GMACs"}}


def appetite(results: list[dict], flops: dict[str, dict]) -> list[dict]:
    """Estimated GPU samples/s and the workers one GPU needs at the slowest per-worker rate measured (image files,
    and litdata shards where measured)."""
    rows = []
    for pipeline, f in flops.items():
        for read in ("files", "shards"):
            rates = [r["samples_per_s_per_worker"] for r in results if r["pipeline"] == pipeline
                     and r["workers"] == 1 and ("shards" in r["format"]) == (read == "shards")]
            if not rates:
                continue
            slowest = min(rates)
            for gpu, peaks in GPUS.items():
                for prec, peak in peaks.items():
                    rate = UTILISATION * peak * 1e12 / (f["gflops"] * 1e9)
                    rows.append({"pipeline": pipeline, "model": f["model"], "read": read,
                                 "gflops_per_sample": round(f["gflops"], 1), "gpu": gpu, "precision": prec,
                                 "gpu_samples_per_s": round(rate, 1), "slowest_per_worker": slowest,
                                 "workers_needed": math.ceil(rate / slowest)})
    return rows


def write_markdown(path: Path, results: list[dict], need: list[dict], flops: dict, desc: str, argv) -> None:
    lines = ["# Data loading vs a GPU's appetite", "",
             f"`python -m benchmarks.data_loading {' '.join(argv)}` on {dt.date.today().isoformat()}, {desc}. "
             "Fake datasets of photo-like images at the sizes shown (page cache warm: disk reads not included).", "",
             "| pipeline | crop | source images | format | workers | samples/s | per worker | decode ms / image |"
             " load avg |", "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['pipeline']} | {r['crop']}² | {r['source']} ({r['source_size']}) | {r['format']} "
                     f"| {r['workers']} | {r['samples_per_s']} | {r['samples_per_s_per_worker']} "
                     f"| {r['decode_ms']} | {r['load_avg_1min']} |")
    lines += ["", f"GPU side (estimate: FLOPs per training sample at {UTILISATION:.0%} of the dense peak; "
              "`make bench-gpu` measures it):", "",
              "| model | GFLOP / sample | GPU | precision | samples/s (est.) | reading | slowest per-worker rate "
              "| workers needed |", "|---|---:|---|---|---:|---|---:|---:|"]
    for n in need:
        lines.append(f"| {n['model']} | {n['gflops_per_sample']:.0f} | {n['gpu']} | {n['precision']} "
                     f"| {n['gpu_samples_per_s']} | {n['read']} "
                     f"| {n['slowest_per_worker']} | {n['workers_needed']} |")
    lines += ["", *(f"- {f['model']}: {f['detail']}" for f in flops.values())]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per setting")
    p.add_argument("--workers", default="1", help="comma list (1 gives the per-worker rate)")
    p.add_argument("--pipelines", default="diffuir,diff_restorer")
    p.add_argument("--formats", default="png,jpg")
    p.add_argument("--sizes", default="", help="only these source labels (e.g. 0.3MP,12MP); default all")
    p.add_argument("--no-flops", action="store_true", help="skip the GPU estimate")
    p.add_argument("--shards", action="store_true",
                   help="also read the same rows from litdata shards (src.data.shards): before and after")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    argv = list(argv if argv is not None else sys.argv[1:])
    torch.set_num_threads(1)
    desc = machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="uir_bench_") as tmp:
        for pipeline in args.pipelines.split(","):
            crop, sizes = SOURCES[pipeline]
            for label, size in sizes.items():
                if args.sizes and label not in args.sizes.split(","):
                    continue
                for ext in args.formats.split(","):
                    root = Path(tmp) / f"{pipeline}_{label}_{ext}"
                    rows = make_fake_dataset(root, pipeline, size, ext)
                    dec = decode_ms(root / "gt" / f"0.{ext}")
                    reads = [(ext, None)]
                    if args.shards:  # after: the same rows from litdata shards (Diff-Restorer's resized once)
                        from src.data.shards import build_shards

                        shard_dir = build_shards(rows, root, root / "shards",
                                                 resize_to=crop if pipeline == "diff_restorer" else None)
                        reads.append((f"{ext} → shards" + (f" ({crop}²)" if pipeline == "diff_restorer" else ""),
                                      shard_dir))
                    for (fmt, shards), workers in itertools.product(reads, (int(w) for w in args.workers.split(","))):
                        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                        n, sec = measure(loader(pipeline, rows, root, crop, workers, shards), args.seconds)
                        r = {"pipeline": pipeline, "crop": crop, "source": label,
                             "source_size": f"{size[0]}x{size[1]}", "format": fmt, "workers": workers,
                             "samples": n, "seconds": round(sec, 2),
                             "samples_per_s": round(n / sec, 1),
                             "samples_per_s_per_worker": round(n / sec / workers, 1),
                             "decode_ms": round(dec, 1), "load_avg_1min": round(load, 2), "machine": desc,
                             "date": dt.date.today().isoformat()}
                        results.append(r)
                        print(f"{pipeline:<14} {label:>6} {fmt}  workers {workers}: "
                              f"{r['samples_per_s']:>6.1f} samples/s "
                              f"({r['samples_per_s_per_worker']:.1f} per worker; decode {dec:.0f} ms/image)",
                              flush=True)
    out = Path(args.out)
    write_rows(out, results)
    if not args.no_flops:
        flops = training_gflops_per_sample()
        need = appetite(results, flops)
        write_markdown(out.with_suffix(".md"), results, need, flops, desc, argv)
        for n in need:
            print(f"{n['model']:<28} {n['gpu']} {n['precision']}: ~{n['gpu_samples_per_s']} samples/s -> "
                  f"{n['workers_needed']} workers ({n['read']})", flush=True)
    print(f"machine: {desc}\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
