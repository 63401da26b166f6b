"""Does a checkpoint restore photos it has never seen? Degrade photos that are not in the built-in set, restore
them through ``src.restore``'s :class:`~src.restore.Restorer`, and report PSNR/SSIM-Y of input and output.

    python -m benchmarks.unseen_photos --ckpt logs/diffuir_t_demo/runs/<time>/checkpoints/last.ckpt

The photos ship with the installed packages but are never used by the built-in training or held-out sets
(:data:`src.data.builtin.TRAIN_IMAGES`, :data:`~src.data.builtin.HELDOUT_IMAGES`): matplotlib's portrait of Grace
Hopper, scikit-learn's two sample photos (a Chinese temple, a flower) and scikit-image's photo of a road sign
(``text``, grayscale). Each is
centre-cropped to ``--size`` and degraded once per task the checkpoint was trained on, with the hard end of the
training range (Gaussian σ = 50, JPEG quality 10; the other tasks at their default parameters), seeded.
Writes ``unseen_photos.csv`` (per image), ``unseen_photos_summary.csv`` / ``.md`` (per task) and one labelled
grid per photo (``grid_<photo>.png``: a row per task, LQ | restored | GT with PSNR/SSIM) to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from src.data.builtin import center_crop
from src.data.degradations import TASKS, degrade
from src.metrics.fidelity import psnr, ssim
from src.reporting.grids import save_comparison_grid
from src.reporting.tables import per_task_table, to_markdown, write_csv

# photo name -> (package, path inside the package's data folder)
PHOTOS = {
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "road_sign": ("skimage", "data/text.png"),
}
# the hard end of the training ranges of src.data.degradations.random_params
TASK_PARAMS = {"noise": {"sigma": 50.0}, "jpeg": {"quality": 10}}


def photo_path(name: str) -> Path:
    package, rel = PHOTOS[name]
    module = __import__(package)
    path = Path(module.__file__).parent / rel
    if not path.is_file():
        raise FileNotFoundError(f"unseen photo {name!r} not found at {path} (it ships with {package})")
    return path


def load_photo(name: str, size: int) -> np.ndarray:
    """An unseen photo as float32 H×W×3 in [0, 1], centre-cropped to ``size`` (read by the suite's reader)."""
    from src.utils.images import read_image

    img = read_image(photo_path(name))
    rgb = np.asarray(img.rgb, dtype=np.float32)
    return np.ascontiguousarray(center_crop(rgb, size))


def trained_tasks(model) -> list[str]:
    """The tasks a model was trained on (its ``trained_tasks`` hyper-parameter), else all of :data:`TASKS`."""
    names = (getattr(model, "hparams", None) or {}).get("trained_tasks")
    return [t for t in (names or TASKS) if t in TASKS]


def evaluate(ckpt: str, out_dir: Path, size: int = 256, seed: int = 0, tasks: list[str] | None = None,
             steps: int | None = None) -> list[dict]:
    from src.inference import Restorer
    from src.utils.checkpoints import load_restoration_model

    model = load_restoration_model(ckpt)
    tasks = tasks or trained_tasks(model)
    restorer = Restorer(model, steps=steps, seed=seed, tile=0)
    rows = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for p_index, name in enumerate(PHOTOS):
        gt = load_photo(name, size)
        columns = ([], [], [])
        for task in tasks:
            rng = np.random.default_rng([seed, p_index, TASKS.index(task)])
            lq = degrade(gt, task, rng, **TASK_PARAMS.get(task, {})).astype(np.float32)
            if np.array_equal(lq, gt):  # e.g. no rain streak fell on a small crop: nothing to restore
                print(f"  {name:12s} {task:9s} skipped: the degradation left this crop unchanged")
                continue
            out = restorer.restore(lq)
            row = {"photo": name, "task": task,
                   "psnr_in": psnr(lq, gt), "psnr_out": psnr(out, gt),
                   "ssim_in": ssim(lq, gt), "ssim_out": ssim(out, gt)}
            row["gain_db"] = row["psnr_out"] - row["psnr_in"]
            rows.append(row)
            for col, img in zip(columns, (lq, out, gt)):
                col.append(torch.from_numpy(img).permute(2, 0, 1))
            print(f"  {name:12s} {task:9s} PSNR-Y {row['psnr_in']:6.2f} -> {row['psnr_out']:6.2f} dB "
                  f"({row['gain_db']:+.2f})", flush=True)
        if columns[0]:  # one grid per photo (the photos differ in size): a row per task
            save_comparison_grid(out_dir / f"grid_{name}.png", *(torch.stack(c) for c in columns))
    summary = per_task_table(rows)
    with (out_dir / "unseen_photos.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["photo", "task"])
        writer.writeheader()
        writer.writerows(rows)
    write_csv(summary, out_dir / "unseen_photos_summary.csv")
    (out_dir / "unseen_photos.md").write_text(
        f"# Unseen photos: {ckpt}\n\nPSNR/SSIM on Y, {size}² centre crops, seed {seed}\n\n"
        + to_markdown(summary) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a suite checkpoint or export folder")
    parser.add_argument("--out", default=None, help="output folder (default: beside the checkpoint's run)")
    parser.add_argument("--size", type=int, default=256, help="centre crop side (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    parser.add_argument("--tasks", nargs="*", default=None, help=f"subset of {list(TASKS)} (default: trained)")
    args = parser.parse_args(argv)
    if args.size < 16:
        parser.error(f"--size {args.size}: must be at least 16 pixels")
    if not Path(args.ckpt).exists():
        parser.error(f"--ckpt {args.ckpt}: no such file or folder")
    for t in args.tasks or []:
        if t not in TASKS:
            parser.error(f"--tasks: unknown task {t!r}; expected some of {list(TASKS)}")
    ckpt = Path(args.ckpt)
    out = Path(args.out) if args.out else (ckpt.parent.parent if ckpt.parent.name == "checkpoints"
                                            else ckpt.parent) / "unseen_photos"
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    start = time.perf_counter()
    print(f"Unseen photos ({', '.join(PHOTOS)}), restored by {ckpt}:")
    summary = evaluate(str(ckpt), out, args.size, args.seed, args.tasks, args.steps)
    print("\n" + to_markdown(summary))
    gains = {r["task"]: r["psnr_out"] - r["psnr_in"] for r in summary}
    print("PSNR-Y gain: " + ", ".join(f"{t} {g:+.2f} dB" for t, g in gains.items()))
    print(f"\n{time.perf_counter() - start:.0f} s; table and grid in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
