"""Data-loading throughput of the two training pipelines: samples/s (and per worker) for 1 and 2 workers at 256²
and 512² training crops, on a temporary fake dataset written in the published formats' style (800×600 images:
PNG pairs for low-light / rain / blur / raindrop, JPEG pairs for haze / snow, clean PNGs for noise / JPEG
synthesis).

    python -m benchmarks.data_loading                     # writes experiments/bench/data_loading.csv
    python -m benchmarks.data_loading --seconds 3 --workers 1,2,4 --crops 256

* ``diffuir``: :class:`~src.data.datasets.DiffUIRTrainDataset` with the per-batch composition sampler (batch 10:
  read two PNG/JPEG files, random crop, flips, histogram equalisation of low-light inputs);
* ``diff_restorer``: :class:`~src.data.datasets.DiffRestorerTrainDataset` with per-epoch balancing (batch 4: read,
  resize to the crop size, augmentation of oversampled copies, noise / JPEG synthesis for the clean sources).

Each setting runs for ``--seconds`` after a warm-up of two batches (worker start-up excluded). The result depends on
the machine: its description, and its load average when the setting started (other jobs on a shared machine take
cores from the workers), are in every row.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from src.data.balancing import BalancedTaskSampler, TaskCompositionSampler, task_pools, weights_vector
from src.data.datasets import DiffRestorerTrainDataset, DiffUIRTrainDataset, worker_init_fn
from src.data.manifests import Row

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "bench" / "data_loading.csv"
SIZE = (800, 600)
PAIRED = {"low_light": "png", "rain": "png", "blur": "png", "raindrop": "png", "haze": "jpg", "snow": "jpg"}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}; {cores} usable cores; Python {platform.python_version()}; torch {torch.__version__}; "
            f"{platform.system()} {platform.release()}")


def _photo(rng: np.random.Generator) -> np.ndarray:
    """Photo-like content: smooth colour fields plus fine texture (compresses like a photograph, not like noise)."""
    low = rng.random((6, 8, 3))
    arr = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize(SIZE, Image.BICUBIC), dtype=np.float32)
    arr += rng.normal(0, 6, arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def make_fake_dataset(root: Path, per_task: int = 6, seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows = []
    for task, ext in PAIRED.items():
        for i in range(per_task):
            for side in ("lq", "gt"):
                p = root / task / side / f"{i}.{ext}"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(_photo(rng)).save(p, **({"quality": 95} if ext == "jpg" else {}))
            rows.append(Row(f"{task}/lq/{i}.{ext}", f"{task}/gt/{i}.{ext}", task, task))
    for i in range(per_task):
        p = root / "clean" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(rng)).save(p)
        rows += [Row(None, f"clean/{i}.png", t, "DIV2K") for t in ("noise", "jpeg")]
    return rows


def loader(pipeline: str, rows: list[Row], root: Path, crop: int, workers: int) -> DataLoader:
    if pipeline == "diffuir":
        ds = DiffUIRTrainDataset(rows, root, patch_size=crop)
        w = weights_vector({"haze": 0.4, "low_light": 0.1, "rain": 0.2, "snow": 0.2, "blur": 0.1})
        batch = 10
        sampler = TaskCompositionSampler(task_pools(ds.labels), w, batch, batches_per_epoch=100000)
    else:
        ds = DiffRestorerTrainDataset(rows, root, image_size=crop)
        batch = 4
        sampler = BalancedTaskSampler(task_pools(ds.labels), samples_per_task=50000)
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


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per setting")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--crops", default="256,512")
    p.add_argument("--pipelines", default="diffuir,diff_restorer")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    desc = machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="uir_bench_") as tmp:
        root = Path(tmp)
        rows = make_fake_dataset(root)
        for pipeline in args.pipelines.split(","):
            for crop in (int(c) for c in args.crops.split(",")):
                for workers in (int(w) for w in args.workers.split(",")):
                    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                    n, sec = measure(loader(pipeline, rows, root, crop, workers), args.seconds)
                    r = {"pipeline": pipeline, "crop": crop, "workers": workers, "samples": n,
                         "seconds": round(sec, 2), "samples_per_s": round(n / sec, 1),
                         "samples_per_s_per_worker": round(n / sec / workers, 1),
                         "source_images": f"{SIZE[0]}x{SIZE[1]} PNG/JPEG", "load_avg_1min": round(load, 2),
                         "machine": desc,
                         "date": dt.date.today().isoformat()}
                    results.append(r)
                    print(f"{pipeline:<14} crop {crop:>3}  workers {workers}: {r['samples_per_s']:>7.1f} samples/s "
                          f"({r['samples_per_s_per_worker']:.1f} per worker)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(results[0]))
        w.writeheader()
        w.writerows(results)
    print(f"machine: {desc}\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
