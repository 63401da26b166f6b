"""The README's first restore example: one unseen photo with Gaussian noise, the input, the best classical
baseline, the model's restoration and the original side by side, each labelled with its PSNR/SSIM-Y.

    python -m benchmarks.readme_figure                      # shipped DiffUIR-T weights, china, σ 25, 256²
    python -m benchmarks.readme_figure --ckpt <ckpt> --photo grace_hopper --sigma 50

The degraded input is exactly the ``noise σ<sigma>`` row of :mod:`benchmarks.unseen_photos` for that photo and
seed, so the figure's numbers are one row of that table. Writes ``--out`` (default
``experiments/demo/readme_restore_example.jpg``) and prints the numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.unseen_photos import PHOTOS, SIGMAS, degrade_photo, load_photo, task_rows
from src.baselines import all_skipped_notes, best_baseline
from src.metrics.fidelity import psnr
from src.reporting.grids import render_grid

DEFAULT_OUT = Path("experiments/demo/readme_restore_example.jpg")


def noisy_input(name: str, sigma: float, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(GT, LQ) of ``name`` with noise ``sigma``, as the unseen-photos table degrades it."""
    sigmas = SIGMAS if sigma in SIGMAS else (sigma,)
    _, task, variant, params = next(r for r in task_rows(["noise"], sigmas) if r[3]["sigma"] == sigma)
    gt = load_photo(name, size)
    return gt, degrade_photo(gt, task, params, seed, list(PHOTOS).index(name), variant)


def make_figure(ckpt: str | Path, out: Path, name: str = "china", sigma: float = 25.0, size: int = 256,
                seed: int = 0, steps: int | None = None) -> dict:
    """Restore one noisy unseen photo, run the noise baselines (σ known), save the labelled figure at ``out``."""
    from src.inference import Restorer
    from src.utils.checkpoints import load_restoration_model

    gt, lq = noisy_input(name, sigma, size, seed)
    restored = Restorer(load_restoration_model(ckpt), steps=steps, seed=seed, tile=0).restore(lq)
    best = best_baseline("noise", lq, gt, sigma=sigma)
    method = best.label.split(" (")[0]
    columns = [torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None] for x in (lq, best.out, restored, gt)]
    labels = [f"input (noise sigma {sigma:g})", f"best baseline: {method}", "restored (suite)", "original (unseen)"]
    out.parent.mkdir(parents=True, exist_ok=True)
    render_grid(*columns, labels=labels, gt_last=True).save(out, quality=92)
    return {"photo": name, "sigma": sigma, "psnr_in": psnr(lq, gt), "baseline": best.label,
            "psnr_base": best.psnr, "psnr_out": psnr(restored, gt), "figure": out}


def main(argv: list[str] | None = None) -> int:
    from src.inference import DEFAULT_WEIGHTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=str(DEFAULT_WEIGHTS), help="checkpoint or export folder (default: shipped)")
    parser.add_argument("--photo", default="china", help=f"one of {list(PHOTOS)} (default china)")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise std on the 0-255 scale (default 25)")
    parser.add_argument("--size", type=int, default=256, help="centre crop side (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output image (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.photo not in PHOTOS:
        parser.error(f"--photo {args.photo!r}: expected one of {list(PHOTOS)}")
    if not 0 < args.sigma <= 255:
        parser.error(f"--sigma {args.sigma}: must be in (0, 255]")
    if args.size < 16:
        parser.error(f"--size {args.size}: must be at least 16 pixels")
    if not Path(args.ckpt).exists():
        parser.error(f"--ckpt {args.ckpt}: no such file or folder")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    for note in all_skipped_notes(["noise"]):
        print(note)
    r = make_figure(args.ckpt, Path(args.out), args.photo, args.sigma, args.size, args.seed, args.steps)
    print(f"{r['photo']}, noise σ {r['sigma']:g}, {args.size}²: PSNR-Y input {r['psnr_in']:.2f} dB, "
          f"{r['baseline']} {r['psnr_base']:.2f} dB, restored {r['psnr_out']:.2f} dB -> {r['figure']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
