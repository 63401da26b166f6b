"""Restore your own images with any trained model of the suite.

    python -m src.restore photo.jpg scans/ "shots/**/*.png" --ckpt logs/.../checkpoints/last.ckpt --out restored/
    python -m src.restore photo.jpg        # the shipped DiffUIR-T weights (DEFAULT_WEIGHTS), into ./restored/

Inputs are files (tried whatever their extension), folders (their image files; ``--recursive`` for sub-folders)
or glob patterns (quoted, so that ``**`` works). The model is rebuilt from the checkpoint alone
(:func:`src.utils.checkpoints.load_restoration_model`: a ``.ckpt`` or an export folder of ``src.export``;
weights-only, and the stored config may build only suite classes): DiffUIR, Diff-Restorer or any later model.

What it does, per image: read it upright (:mod:`src.utils.images`: grayscale, RGBA, 16-bit and EXIF-rotated inputs
are handled as documented there), pad it to the model's size multiple, restore it — in one pass, or tile by tile
with overlap and a smooth blend when a side exceeds ``--tile`` (:mod:`src.utils.tiling`), so memory stays bounded
— crop back, and write it under ``--out`` with the input's name, size, channels and bit depth, atomically.

The work is :mod:`src.inference`'s (the :class:`~src.inference.Restorer`, job planning, device, precision and
engine choice, and the model protocol a new model follows); this module is the command: flags, progress, summary.
Models with ``detect_degradation`` (Diff-Restorer) have the label printed for every image and counted.

Safety: flags and input paths are checked before the model loads (nonsense values such as ``--tile -5`` or
``--steps 0`` are usage errors, exit 2); unreadable and non-image files, broken and looping symbolic links are
reported and skipped (exit status 1 if any failed); an input is never overwritten (an output path equal to an
input is an error); outputs are written to a temporary file and renamed, so a killed run leaves no truncated
image, and the temporary files a killed run left in the output folders are removed at the next start (a line
says so); a rerun skips images whose output exists unless ``--overwrite``.

The CLI is argparse, not Hydra: it takes lists of paths and shell globs (awkward in Hydra's override grammar),
needs no config composition (the model's config travels inside the checkpoint), and should not create Hydra run
folders or change logging for a one-shot inference command.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from src.diffuir.engines import ENGINES
from src.inference import (
    DEFAULT_OVERLAP,
    DEFAULT_WEIGHTS,
    PRECISIONS,
    Job,
    check_settings,
    load_restorer,
    pick_device,
    pick_precision,
    plan_jobs,
)
from src.utils.atomic import check_inside, check_writable_folder, describe_cleanup, one_line, remove_stale_temporaries
from src.utils.checkpoints import parameter_count
from src.utils.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image, write_image

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# ---------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m src.restore",
        description="Restore images with a trained uir-suite checkpoint (DiffUIR, Diff-Restorer, ...).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or quoted glob patterns")
    p.add_argument("--ckpt", default=None,
                   help="a checkpoint written by src.train (e.g. .../checkpoints/last.ckpt) or an export folder of "
                        "src.export (default: the shipped DiffUIR-T weights, src/pretrained/diffuir_t_photos)")
    p.add_argument("--out", default="restored", help="output folder (created); outputs keep the inputs' names")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS],
                   help="32: exact fp32; bf16 (on the CPU the bf16 engine) or 16: autocast; auto: on a CPU with "
                        "native bf16 the bf16 engine if its output on a check image is >= 45 dB PSNR from fp32, on "
                        "CUDA the model's preference, else 32 (the first output line says which)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler's noise (same seed, same output)")
    p.add_argument("--tile", type=int, default=512,
                   help="images with a side above this are restored in tiles of this size (0: never tile)")
    p.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP,
                   help="overlap of neighbouring tiles, blended smoothly")
    p.add_argument("--tile-batch", type=int, default=None,
                   help="tiles restored per model call (default: the engine's, one per OpenVINO stream, else 1)")
    p.add_argument("--overwrite", action="store_true", help="restore again images whose output exists")
    p.add_argument("--recursive", action="store_true", help="also take images in sub-folders of folder inputs")
    p.add_argument("--ext", default=None, help="write this format instead of the input's (e.g. png)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="quality of JPEG/WebP outputs")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse larger images (decompression-bomb guard; 0: no limit)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--engine", default="auto", choices=["auto", *ENGINES],
                   help="DiffUIR inference engine (auto: the fastest exact one installed; see src/diffuir/engines.py)")
    p.add_argument("--self-ensemble", type=int, default=1, metavar="N",
                   help="average the restorations of N flips and quarter turns of each image (1, 2, 4 or 8; "
                        "N times the time; 2, the image and its mirror, gains 0.1-0.2 dB on every task with the "
                        "shipped weights; 8 gains 0.25 dB on noise but costs haze and rain: README)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _progress(total: int, disable: bool, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=disable, file=sys.stderr, dynamic_ncols=True, **kwargs)


def _say(message: str, bar=None) -> None:
    if bar is not None and not bar.disable:
        bar.write(message, file=sys.stdout)
    else:
        print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = check_settings(args.steps, args.seed, args.tile, args.tile_overlap, args.tile_batch,
                              args.jpeg_quality, args.max_pixels, args.threads, args.self_ensemble)
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return EXIT_USAGE
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    try:
        ckpt = Path(args.ckpt) if args.ckpt else DEFAULT_WEIGHTS
        if not args.ckpt and not ckpt.exists():
            raise ValueError(f"the shipped weights are missing from {ckpt}: pass --ckpt, or recreate them with "
                             "`python -m src.data.photo_folder`, `python -m src.train experiment=diffuir_t_photos` and "
                             "`python -m src.export --ckpt "
                             f"<its last.ckpt> --format safetensors --out {ckpt}`")
        if not ckpt.exists():
            raise ValueError(f"--ckpt {ckpt}: checkpoint not found (a .ckpt written by src.train, or an export "
                             "folder of src.export)")
        args.ckpt = str(ckpt)
        device = pick_device(args.device)
        pick_precision(args.precision, device)  # validates the flag before the model is loaded
        check_writable_folder(out_dir, "--out")
        if args.ext:
            from src.utils.images import output_format

            output_format("x." + args.ext.lstrip("."))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    plan = plan_jobs(args.inputs, out_dir, args.recursive, args.ext)
    if not plan.jobs and not plan.failed:
        print("error: no input images", file=sys.stderr)
        return EXIT_USAGE

    if not plan.jobs:  # every input failed: say why without loading a model
        print("\n".join(["restored 0, skipped 0 (output exists; --overwrite to redo), "
                         f"failed {len(plan.failed)}: nothing to restore", "failed:",
                         *(f"  {src}: {reason}" for src, reason in plan.failed)]), flush=True)
        return EXIT_FAILED

    started = time.perf_counter()
    try:
        model, restorer = load_restorer(args.ckpt, device, args.precision, args.steps, args.seed, args.tile,
                                        args.tile_overlap, args.tile_batch, args.engine, args.self_ensemble)
    except (FileNotFoundError, KeyError, TypeError, ValueError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a model that fails to build (e.g. frozen weight files it names are missing)
        print(f"error: cannot load a model from {args.ckpt}: {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    precision = restorer.precision
    print(restorer.engine_line, flush=True)
    target = (getattr(model, "model_config", None) or {}).get("_target_", type(model).__name__)
    print(f"model: {type(model).__name__} ({target}, {parameter_count(model):,} parameters) from {args.ckpt}\n"
          f"device: {device}, precision: {precision}, steps: {args.steps or 'model default'}, seed: {args.seed}, "
          f"tiles: {f'{restorer.tile} px, overlap {restorer.overlap}' if restorer.tile else 'off'}"
          f"{f', self-ensemble x{restorer.ensemble}' if restorer.ensemble > 1 else ''}\n"
          f"{len(plan.jobs)} image(s) -> {out_dir}", flush=True)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: --out {out_dir} cannot be created: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    cleanup = describe_cleanup(*remove_stale_temporaries(sorted({j.output.parent for j in plan.jobs}),
                                                         within=out_dir))
    if cleanup:
        print(f"{out_dir}: {cleanup}", flush=True)
    loaded_in, started = time.perf_counter() - started, time.perf_counter()

    restored: list[Job] = []
    skipped: list[Job] = []
    failed = list(plan.failed)
    degradations: Counter = Counter()
    bar = _progress(len(plan.jobs), args.no_progress, unit="img", desc="restoring")
    try:
        for job in plan.jobs:
            bar.set_postfix_str(job.source.name, refresh=False)
            if job.output.exists() and not args.overwrite:
                skipped.append(job)
                bar.update(1)
                continue
            try:
                image = read_image(job.source, max_pixels=args.max_pixels or None)
                tiles = restorer.num_tiles(image.height, image.width)
                inner = _progress(tiles, args.no_progress or tiles == 1, unit="tile", leave=False, desc="tiles")
                labels = restorer.detect(image.rgb)
                with inner:
                    result = restorer.restore(image.rgb, progress=inner.update)
                check_inside(out_dir, job.output)  # never through a symlinked folder out of --out
                job.output.parent.mkdir(parents=True, exist_ok=True)
                notes = image.notes + write_image(job.output, result, image, overwrite=args.overwrite,
                                                  jpeg_quality=args.jpeg_quality)
            except ImageReadError as e:
                failed.append((str(job.source), e.reason))
            except FileExistsError:  # appeared while we worked (another run): keep it
                skipped.append(job)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                failed.append((str(job.source), f"out of GPU memory (try a smaller --tile than {restorer.tile} or "
                                                "--tile-batch 1)"))
            except (OSError, ValueError, RuntimeError) as e:
                failed.append((str(job.source), f"{type(e).__name__}: {e}"))
            else:
                restored.append(job)
                extra = []
                if labels is not None:
                    degradations.update(labels)
                    extra.append(f"detected degradation: {', '.join(labels) or 'none'}")
                extra += notes
                if extra:
                    _say(f"{job.source}: " + "; ".join(extra), bar)
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        print("\ninterrupted: finished outputs are complete files; rerun to continue (existing ones are skipped)",
              file=sys.stderr)
        return 130
    bar.close()

    elapsed = time.perf_counter() - started
    lines = [f"restored {len(restored)}, skipped {len(skipped)} (output exists; --overwrite to redo), "
             f"failed {len(failed)} in {elapsed:.1f} s"
             + (f" ({elapsed / len(restored):.2f} s per restored image)" if restored else "")
             + f"; model loaded in {loaded_in:.1f} s"]
    if degradations:
        lines.append("detected degradations: " + ", ".join(f"{k} ×{v}" for k, v in degradations.most_common()))
    if plan.ignored:
        lines.append(f"ignored {len(plan.ignored)} non-image file(s) in folders/patterns, e.g. {plan.ignored[0]}")
    if failed:
        lines.append("failed:")
        lines += [f"  {src}: {reason}" for src, reason in failed]
    lines.append(f"outputs in {out_dir}")
    print("\n".join(lines), flush=True)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
