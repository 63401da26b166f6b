"""Does a checkpoint restore photos it has never seen, and better than the classical filters a user already has?
Degrade photos that no built-in training set uses, restore them through the
:class:`~src.inference.Restorer`, run the task's classical baselines (:mod:`src.baselines`) on the same inputs, and
report PSNR/SSIM-Y of the input, of each baseline, of the best baseline per image and of the model, with the model's
gap to the best baseline in dB.

    python -m benchmarks.unseen_photos --ckpt logs/diffuir_t_demo/runs/<time>/checkpoints/last.ckpt

The photos ship with the installed packages and are never training images (:data:`src.data.builtin.TRAIN_IMAGES`):
matplotlib's portrait of Grace Hopper, scikit-learn's two sample photos (a Chinese temple, a flower),
scikit-image's photo of a road sign (``text``, grayscale) and scikit-image's three held-out photos
(:data:`~src.data.builtin.HELDOUT_IMAGES`: a cat, a motorcycle, a cameraman). Each is centre-cropped to ``--size``
and degraded once per task the checkpoint was trained on, seeded: Gaussian noise at each of ``--sigmas`` (15, 25,
50: one row each, ``noise σ25``; the baselines run told σ and, as the blind model is, with σ estimated), JPEG at
quality 10, the other tasks at their default parameters. Writes ``unseen_photos.csv`` (per image, a column per
baseline), ``unseen_photos_summary.csv`` / ``.md`` (per task; the Markdown adds a table of every baseline) and one
labelled grid per photo (``grid_<photo>.png``: a row per task, LQ | best baseline | restored | GT with PSNR/SSIM; the
baseline tile repeats the LQ where the task has no baseline) to ``--out``. BM3D needs ``pip install -e .[baselines]``;
without it its column is skipped with a note.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from src.baselines import all_skipped_notes, best_baseline, run_baselines
from src.data.builtin import HELDOUT_IMAGES, center_crop, load_builtin_image
from src.data.degradations import degrade
from src.metrics.fidelity import psnr, ssim
from src.reporting.grids import save_comparison_grid
from src.reporting.tables import per_task_table, to_markdown, write_csv
from src.tasks import TASKS
from src.utils.csv_cells import write_rows

# photo name -> (package, path inside the package's data folder); "builtin": a scikit-image held-out photo
PHOTOS = {
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "road_sign": ("skimage", "data/text.png"),
    **{name: ("builtin", name) for name in HELDOUT_IMAGES},
}
SIGMAS = (15.0, 25.0, 50.0)  # the σ range: each a row of its own
TASK_PARAMS = {"jpeg": {"quality": 10}}  # the hard end of src.data.degradations.random_params' range
GRID_LABELS = ["LQ", "best baseline", "restored", "GT"]


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

    if PHOTOS[name][0] == "builtin":
        rgb = load_builtin_image(PHOTOS[name][1])
    else:
        rgb = np.asarray(read_image(photo_path(name)).rgb, dtype=np.float32)
    return np.ascontiguousarray(center_crop(rgb, size), dtype=np.float32)


def trained_tasks(model) -> list[str]:
    """The tasks a model was trained on (its ``trained_tasks`` hyper-parameter), else all of :data:`TASKS`."""
    names = (getattr(model, "hparams", None) or {}).get("trained_tasks")
    return [t for t in (names or TASKS) if t in TASKS]


def task_rows(tasks: list[str], sigmas=SIGMAS) -> list[tuple[str, str, int, dict]]:
    """(row name, task, variant index, degradation parameters) per table row: noise once per σ (``noise σ25``)."""
    rows = []
    for task in tasks:
        if task == "noise":
            rows += [(f"noise σ{s:g}", "noise", i, {"sigma": float(s)}) for i, s in enumerate(sigmas)]
        else:
            rows.append((task, task, 0, dict(TASK_PARAMS.get(task, {}))))
    return rows


def degrade_photo(gt: np.ndarray, task: str, params: dict, seed: int, p_index: int, variant: int) -> np.ndarray:
    """The seeded degradation of one (photo, row): rng ``[seed, photo index, task index, variant]``."""
    rng = np.random.default_rng([seed, p_index, TASKS.index(task), variant])
    return degrade(gt, task, rng, **params).astype(np.float32)


def baseline_table(rows: list[dict]) -> list[dict]:
    """Per task and baseline (label with settings): n, mean PSNR/SSIM-Y, from the per-image rows."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in rows:
        for label, (p, s) in r["_baselines"].items():
            groups.setdefault((r["task"], label), []).append((p, s))
    return [{"task": t, "method": m, "n": len(v), "psnr": float(np.mean([p for p, _ in v])),
             "ssim": float(np.mean([s for _, s in v]))} for (t, m), v in groups.items()]


def baseline_markdown(table: list[dict]) -> str:
    lines = ["| task | baseline (settings) | n | PSNR | SSIM |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['task']} | {r['method']} | {r['n']} | {r['psnr']:.2f} | {r['ssim']:.4f} |" for r in table]
    return "\n".join(lines) + "\n"


def evaluate(ckpt: str, out_dir: Path, size: int = 256, seed: int = 0, tasks: list[str] | None = None,
             steps: int | None = None, sigmas=SIGMAS, photos: list[str] | None = None,
             ensemble: int = 1) -> list[dict]:
    from src.inference import Restorer
    from src.utils.checkpoints import load_restoration_model

    model = load_restoration_model(ckpt)
    tasks = tasks or trained_tasks(model)
    restorer = Restorer(model, steps=steps, seed=seed, tile=0, ensemble=ensemble)
    rows = []
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = list(photos or PHOTOS)
    for p_index, name in enumerate(PHOTOS):  # seeds by position in PHOTOS: a subset scores the same rows
        if name not in photos:
            continue
        gt = load_photo(name, size)
        columns = ([], [], [], [])
        for row_name, task, variant, params in task_rows(tasks, sigmas):
            lq = degrade_photo(gt, task, params, seed, p_index, variant)
            if np.array_equal(lq, gt):  # e.g. no rain streak fell on a small crop: nothing to restore
                print(f"  {name:17s} {row_name:10s} skipped: the degradation left this crop unchanged")
                continue
            out = restorer.restore(lq)
            results = run_baselines(task, lq, gt, sigma=params.get("sigma"), blind_too=True)
            best = best_baseline(task, lq, gt, results=results)
            row = {"photo": name, "task": row_name,
                   "psnr_in": psnr(lq, gt), "psnr_out": psnr(out, gt),
                   "ssim_in": ssim(lq, gt), "ssim_out": ssim(out, gt)}
            row["gain_db"] = row["psnr_out"] - row["psnr_in"]
            if best is not None:
                row.update({"psnr_base": best.psnr, "ssim_base": best.ssim, "baseline": best.label,
                            "gap_db": row["psnr_out"] - best.psnr})
            for r in results:
                row[f"psnr_{r.key}"], row[f"ssim_{r.key}"] = r.psnr, r.ssim
            row["_baselines"] = {r.label: (r.psnr, r.ssim) for r in results}
            rows.append(row)
            for col, img in zip(columns, (lq, best.out if best is not None else lq, out, gt)):
                col.append(torch.from_numpy(img).permute(2, 0, 1))
            base = f" | best baseline {best.psnr:6.2f} dB ({best.label})" if best is not None else ""
            print(f"  {name:17s} {row_name:10s} PSNR-Y {row['psnr_in']:6.2f} -> {row['psnr_out']:6.2f} dB "
                  f"({row['gain_db']:+.2f}){base}", flush=True)
        if columns[0]:  # one grid per photo (the photos differ in size): a row per task
            save_comparison_grid(out_dir / f"grid_{name}.png", *(torch.stack(c) for c in columns),
                                 labels=GRID_LABELS, gt_last=True)
    summary = per_task_table(rows)
    fields = list(dict.fromkeys(k for r in rows for k in r if not k.startswith("_"))) or ["photo", "task"]
    write_rows(out_dir / "unseen_photos.csv", rows, fields)
    write_csv(summary, out_dir / "unseen_photos_summary.csv")
    notes = all_skipped_notes(tasks)
    (out_dir / "unseen_photos.md").write_text(
        f"# Unseen photos: {ckpt}\n\nPSNR/SSIM on Y, {size}² centre crops of {len(photos)} photos "
        f"({', '.join(photos)}), seed {seed}; the noise baselines run with σ known and with σ estimated "
        "(the model is blind)"
        + (f"; the model with ×{ensemble} self-ensemble" if ensemble > 1 else "") + "\n\n"
        + to_markdown(summary) + "\n## Every baseline\n\n" + baseline_markdown(baseline_table(rows))
        + "".join(f"\n{n}\n" for n in notes))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a suite checkpoint or export folder")
    parser.add_argument("--out", default=None, help="output folder (default: beside the checkpoint's run)")
    parser.add_argument("--size", type=int, default=256, help="centre crop side (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    parser.add_argument("--tasks", nargs="*", default=None, help=f"subset of {list(TASKS)} (default: trained)")
    parser.add_argument("--sigmas", nargs="+", type=float, default=list(SIGMAS),
                        help="noise levels, one row each (default 15 25 50)")
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), help=f"subset of {list(PHOTOS)} (default: all)")
    parser.add_argument("--self-ensemble", type=int, default=1, choices=[1, 2, 4, 8],
                        help="the model's restorations averaged over this many flips and quarter turns")
    args = parser.parse_args(argv)
    if args.size < 16:
        parser.error(f"--size {args.size}: must be at least 16 pixels")
    if not Path(args.ckpt).exists():
        parser.error(f"--ckpt {args.ckpt}: no such file or folder")
    if any(not 0 < s <= 255 for s in args.sigmas):
        parser.error(f"--sigmas {args.sigmas}: each must be in (0, 255]")
    for p in args.photos:
        if p not in PHOTOS:
            parser.error(f"--photos: unknown photo {p!r}; expected some of {list(PHOTOS)}")
    for t in args.tasks or []:
        if t not in TASKS:
            parser.error(f"--tasks: unknown task {t!r}; expected some of {list(TASKS)}")
    ckpt = Path(args.ckpt)
    out = Path(args.out) if args.out else (ckpt.parent.parent if ckpt.parent.name == "checkpoints"
                                            else ckpt.parent) / "unseen_photos"
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    start = time.perf_counter()
    print(f"Unseen photos ({', '.join(args.photos)}), restored by {ckpt}:")
    for note in all_skipped_notes(args.tasks or TASKS):
        print(note)
    summary = evaluate(str(ckpt), out, args.size, args.seed, args.tasks, args.steps, args.sigmas, args.photos,
                       args.self_ensemble)
    print("\n" + to_markdown(summary))
    gains = {r["task"]: r["psnr_out"] - r["psnr_in"] for r in summary}
    print("PSNR-Y gain: " + ", ".join(f"{t} {g:+.2f} dB" for t, g in gains.items()))
    gaps = {r["task"]: r["gap_db"] for r in summary if r.get("gap_db") is not None and r["task"] != "all"}
    print("PSNR-Y model − best baseline: " + ", ".join(f"{t} {g:+.2f} dB" for t, g in gaps.items()))
    print(f"\n{time.perf_counter() - start:.0f} s; table and grid in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
