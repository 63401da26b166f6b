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

The model protocol (duck-typed, so new models need no change here):

* ``restore(lq, steps=None, generator=None)``: B×3×H×W in [0, 1] → B×3×H×W in [0, 1]. If it also takes
  ``noise`` (the sampler's start noise, shaped like ``lq``), every tile gets its crop of one seeded noise field
  over the whole image, so tiled and untiled results agree; DiffUIR modules whose ``restore`` lacks ``noise`` are
  sampled through their ``diffusion.sample(eval_net, …, noise=…)`` to the same effect. Other models get a seeded
  generator per tile batch.
* optional ``detect_degradation(lq) -> list[str]`` (one label per image; Diff-Restorer's degradation classifier):
  printed for every image and counted in the summary.
* optional ``pad_multiple`` (or ``net.pad_multiple``): the size multiple the network needs.
* optional ``preferred_precision`` (``"32"``, ``"bf16"`` or ``"16"``): what ``--precision auto`` uses on CUDA
  (float32 otherwise, and for models that do not say).

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
import contextlib
import errno
import glob
import inspect
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from src.diffuir.engines import ENGINES, use_engine
from src.utils.atomic import describe_cleanup, remove_stale_temporaries
from src.utils.checkpoints import load_restoration_model, parameter_count
from src.utils.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageReadError, read_image, write_image
from src.utils.tiling import BlockNoise, mix_seed, pad_to_multiple, tile_boxes, tiled_apply

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# The weights used when no --ckpt is given: DiffUIR-T trained by the suite on its built-in data
# (conf/experiment/diffuir_t_builtin.yaml, exported with `python -m src.export --format safetensors`).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "pretrained" / "diffuir_t_builtin"
PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


# ---------------------------------------------------------------------------------------------------------- devices
def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if present, else Apple MPS, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine")
    return device


def pick_precision(name: str, device: torch.device, model=None) -> str:
    """``32`` / ``bf16`` / ``16`` (autocast), or ``auto``: the model's ``preferred_precision`` on CUDA if it declares
    one (a large latent model may want ``bf16``), float32 otherwise.

    float32 is the default because a few sampling steps of these networks are cheap next to image I/O, and reduced
    precision costs up to about one 8-bit level (far more than one 16-bit level).
    """
    if name != "auto":
        if name not in PRECISIONS:
            raise ValueError(f"--precision {name}: expected one of auto, {', '.join(PRECISIONS)}")
        return name
    preferred = getattr(model, "preferred_precision", None)
    if device.type == "cuda" and preferred in PRECISIONS:
        if preferred == "bf16" and not torch.cuda.is_bf16_supported():
            return "16"
        return preferred
    return "32"


# ---------------------------------------------------------------------------------------------------------- restoring
def size_multiple(model) -> int:
    """The side multiple the model's network needs (``pad_multiple`` of the model or of its ``net``), else 1."""
    for owner in (model, getattr(model, "net", None)):
        value = getattr(owner, "pad_multiple", None)
        if isinstance(value, int) and value > 0:
            return value
    return 1


def _noise_route(model) -> str | None:
    """How to hand a start-noise field to ``model``: via ``restore(noise=)``, via ``diffusion.sample``, or not."""
    if "noise" in inspect.signature(model.restore).parameters:
        return "restore"
    diffusion, net = getattr(model, "diffusion", None), getattr(model, "eval_net", None)
    if diffusion is not None and net is not None and "noise" in inspect.signature(diffusion.sample).parameters:
        return "diffusion"
    return None


def check_settings(steps: int | None = None, seed: int = 0, tile: int = 0, overlap: int = 0, tile_batch: int = 1,
                   jpeg_quality: int = 95, max_pixels: int = 0, threads: int | None = None) -> list[str]:
    """What is wrong with these restoration settings (flag names as on the command line); [] if nothing.

    Checked before any model is loaded: values that make no sense are refused, never silently replaced.
    """
    problems = []
    if steps is not None and steps < 1:
        problems.append(f"--steps {steps}: the number of sampling steps must be at least 1 (omit it for the "
                        "model's own)")
    if not 0 <= seed < 2**63:
        problems.append(f"--seed {seed}: must be in [0, 2^63)")
    if tile < 0:
        problems.append(f"--tile {tile}: must be a tile side in pixels, or 0 to never tile")
    if overlap < 0:
        problems.append(f"--tile-overlap {overlap}: must be 0 or more pixels")
    elif tile > 0 and overlap >= tile:
        problems.append(f"--tile-overlap {overlap}: must be smaller than --tile {tile}")
    if tile_batch < 1:
        problems.append(f"--tile-batch {tile_batch}: must be at least 1 tile per model call")
    if not 1 <= jpeg_quality <= 100:
        problems.append(f"--jpeg-quality {jpeg_quality}: must be in 1..100")
    if max_pixels < 0:
        problems.append(f"--max-pixels {max_pixels}: must be 0 (no limit) or a positive pixel count")
    if threads is not None and threads < 1:
        problems.append(f"--threads {threads}: must be at least 1")
    return problems


class Restorer:
    """Restores H×W×3 float images with a model of the suite: padding, tiling, seeded noise, precision.

    ``tile``: sides above it (after padding) are restored in ``tile``×``tile`` tiles overlapping by ``overlap``
    pixels, ``tile_batch`` tiles per model call; 0 restores every image in one pass. ``seed`` fixes the noise.
    Settings that make no sense (``steps`` < 1, negative ``tile`` / ``overlap``, ...) raise :class:`ValueError`.
    Used by ``src.restore`` and the app alike.
    """

    def __init__(self, model, device: torch.device | str = "cpu", precision: str = "32", steps: int | None = None,
                 seed: int = 0, tile: int = 512, overlap: int = 64, tile_batch: int = 1):
        if not callable(getattr(model, "restore", None)):
            raise TypeError(f"{type(model).__name__} has no restore(lq, steps, generator) method")
        problems = check_settings(steps=steps, seed=seed, tile=tile, overlap=overlap, tile_batch=tile_batch)
        if problems:
            raise ValueError("; ".join(problems))
        self.model, self.device = model, torch.device(device)
        self.precision, self.steps, self.seed = precision, steps, int(seed)
        self.multiple = size_multiple(model)
        self.tile = 0 if not tile else max(self.multiple, (int(tile) // self.multiple) * self.multiple)
        if self.tile and not 0 <= overlap < self.tile:
            raise ValueError(f"--tile-overlap must be in [0, {self.tile}) for tiles of {self.tile} pixels")
        self.overlap, self.tile_batch = int(overlap), max(1, int(tile_batch))
        self.noise_route = _noise_route(model)
        self.detects = callable(getattr(model, "detect_degradation", None))

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _restore_batch(self, lq: torch.Tensor, boxes, field: BlockNoise) -> torch.Tensor:
        lq = lq.to(self.device, torch.float32)
        with torch.inference_mode(), self._autocast():
            if self.noise_route is not None:
                noise = torch.stack([field.crop(*box) for box in boxes]).to(self.device)
                if self.noise_route == "restore":
                    out = self.model.restore(lq, steps=self.steps, noise=noise)
                else:  # DiffUIRModule.restore without a noise argument: the same computation with this noise
                    out = (self.model.diffusion.sample(self.model.eval_net, lq * 2 - 1, steps=self.steps,
                                                       noise=noise) + 1) / 2
            else:
                gen = torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, *boxes[0][:2]))
                out = self.model.restore(lq, steps=self.steps, generator=gen)
        return out.float().clamp(0, 1).cpu()

    def num_tiles(self, height: int, width: int) -> int:
        """How many model calls' worth of tiles an image of this size takes (1 if it is not tiled)."""
        h, w = (math.ceil(s / self.multiple) * self.multiple for s in (height, width))
        if not self.tile or (h <= self.tile and w <= self.tile):
            return 1
        return len(tile_boxes(h, w, self.tile, self.overlap))

    def restore(self, rgb: np.ndarray, progress=None) -> np.ndarray:
        """Restore one float32 H×W×3 image in [0, 1]; returns the same shape. ``progress(n)`` counts tiles."""
        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
        padded, (h, w) = pad_to_multiple(x, self.multiple)
        field = BlockNoise(self.seed, channels=padded.shape[0])
        ph, pw = padded.shape[-2:]
        if self.tile and (ph > self.tile or pw > self.tile):
            out = tiled_apply(lambda t, b: self._restore_batch(t, b, field), padded, self.tile, self.overlap,
                              self.tile_batch, progress)
        else:
            out = self._restore_batch(padded[None], [(0, 0, ph, pw)], field)[0]
            if progress is not None:
                progress(1)
        return out[:, :h, :w].permute(1, 2, 0).numpy()

    def detect(self, rgb: np.ndarray) -> list[str] | None:
        """The model's ``detect_degradation`` labels for one image (None if the model has none).

        Images larger than ``tile`` (or 1024 px without tiling) are area-downscaled first, to bound memory.
        """
        if not self.detects:
            return None
        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        limit = self.tile or 1024
        if max(x.shape[-2:]) > limit:
            scale = limit / max(x.shape[-2:])
            size = (max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale)))
            x = F.interpolate(x, size=size, mode="area")
        with torch.inference_mode(), self._autocast():
            labels = self.model.detect_degradation(x.to(self.device))
        first = labels[0] if isinstance(labels, (list, tuple)) and labels else labels
        if isinstance(first, str):
            return [first]
        return [str(v) for v in first] if isinstance(first, (list, tuple)) else [str(first)]


# ---------------------------------------------------------------------------------------------------------- inputs
@dataclass
class Job:
    source: Path         # the input file
    output: Path         # where its restoration goes


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)    # (input, reason)
    ignored: list[Path] = field(default_factory=list)              # non-image files found by a folder / pattern


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _broken_link_reason(path: Path) -> str:
    """Why a symbolic link cannot be followed: a loop, or a missing target."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (the link points back to itself), skipped"
        return f"broken symbolic link (its target {os.readlink(path)} does not exist), skipped"
    return "symbolic link cannot be followed, skipped"


def collect_inputs(specs: list[str], recursive: bool = False,
                   exclude: Path | None = None) -> tuple[list[tuple[Path, Path]], Plan]:
    """(input file, relative output name) pairs, and a plan holding the specs that matched nothing.

    Files named one by one are always tried; files found by scanning a folder or expanding a pattern are taken
    when their extension is an image extension (others are listed as ignored). Hidden files, and files under
    ``exclude`` (the output folder, e.g. inside a recursively scanned input folder), are skipped by scans.
    Symbolic links that loop or point nowhere are reported as failed inputs, not dropped.
    """
    plan, found, seen = Plan(), [], set()
    excluded = os.path.realpath(exclude) if exclude is not None else None

    def add(path: Path, rel: Path, scanned_from: Path | None = None) -> None:
        key = os.path.realpath(path)
        if scanned_from is not None and excluded and excluded != os.path.realpath(scanned_from) \
                and key.startswith(excluded + os.sep):
            return  # the output folder inside a scanned folder (an output folder equal to an input is refused later)
        if key not in seen:
            seen.add(key)
            found.append((path, rel))

    for spec in specs:
        path = Path(spec)
        if path.is_symlink() and not path.exists():
            plan.failed.append((spec, _broken_link_reason(path)))
        elif path.is_dir():
            entries = [p for p in (path.rglob("*") if recursive else path.iterdir())
                       if not any(part.startswith(".") for part in p.relative_to(path).parts)]
            plan.failed += [(str(p), _broken_link_reason(p)) for p in entries if p.is_symlink() and not p.exists()]
            files = sorted(p for p in entries if p.is_file())
            images = [p for p in files if _is_image_name(p)]
            plan.ignored += [p for p in files if not _is_image_name(p)]
            if not images:
                plan.failed.append((spec, "folder has no image files" + ("" if recursive else
                                                                          " (--recursive for sub-folders)")))
            for p in images:
                add(p, p.relative_to(path), scanned_from=path)
        elif path.is_file():
            add(path, Path(path.name))
        elif glob.has_magic(spec):
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
            files = [m for m in matches if m.is_file() and not m.name.startswith(".")]
            if not any(_is_image_name(m) for m in files):
                plan.failed.append((spec, "no image file matches this pattern"))
            plan.ignored += [m for m in files if not _is_image_name(m)]
            for m in files:
                if _is_image_name(m):
                    add(m, Path(m.name), scanned_from=m.parent)
        else:
            plan.failed.append((spec, "no such file or folder"))
    return found, plan


def plan_jobs(specs: list[str], out_dir: Path, recursive: bool = False, ext: str | None = None) -> Plan:
    """Inputs → output paths under ``out_dir``; refuses outputs that would overwrite an input or each other."""
    found, plan = collect_inputs(specs, recursive, exclude=out_dir)
    inputs = {os.path.realpath(p) for p, _ in found}
    taken: dict[str, Path] = {}
    for source, rel in found:
        output = out_dir / rel
        if ext:
            output = output.with_suffix("." + ext.lstrip("."))
        real = os.path.realpath(output)
        if real in inputs or (output.exists() and os.path.samefile(output, source)):
            plan.failed.append((str(source), f"its output {output} would overwrite an input (choose another --out)"))
        elif real in taken:
            plan.failed.append((str(source), f"its output name {output} is already used by {taken[real]}"))
        else:
            taken[real] = source
            plan.jobs.append(Job(source, output))
    return plan


# ---------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m src.restore",
        description="Restore images with a trained uir-suite checkpoint (DiffUIR, Diff-Restorer, ...).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or quoted glob patterns")
    p.add_argument("--ckpt", default=None,
                   help="a checkpoint written by src.train (e.g. .../checkpoints/last.ckpt) or an export folder of "
                        "src.export (default: the shipped DiffUIR-T weights, src/pretrained/diffuir_t_builtin)")
    p.add_argument("--out", default="restored", help="output folder (created); outputs keep the inputs' names")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS],
                   help="32-bit, or bf16 / 16 autocast; auto: 32 unless the model prefers another on CUDA")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler's noise (same seed, same output)")
    p.add_argument("--tile", type=int, default=512,
                   help="images with a side above this are restored in tiles of this size (0: never tile)")
    p.add_argument("--tile-overlap", type=int, default=64, help="overlap of neighbouring tiles, blended smoothly")
    p.add_argument("--tile-batch", type=int, default=1, help="tiles restored per model call")
    p.add_argument("--overwrite", action="store_true", help="restore again images whose output exists")
    p.add_argument("--recursive", action="store_true", help="also take images in sub-folders of folder inputs")
    p.add_argument("--ext", default=None, help="write this format instead of the input's (e.g. png)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="quality of JPEG/WebP outputs")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse larger images (decompression-bomb guard; 0: no limit)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--engine", default="auto", choices=["auto", *ENGINES],
                   help="DiffUIR inference engine (auto: the fastest exact one installed; see src/diffuir/engines.py)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def load_restorer(ckpt: str | Path, device: torch.device | str = "cpu", precision: str = "auto",
                  steps: int | None = None, seed: int = 0, tile: int = 512, overlap: int = 64,
                  tile_batch: int = 1) -> tuple[torch.nn.Module, Restorer]:
    """(model, :class:`Restorer`) for a checkpoint or export folder, through the suite's one safe loader
    (:func:`src.utils.checkpoints.load_restoration_model`); errors as that function's."""
    device = torch.device(device)
    model = load_restoration_model(ckpt, map_location="cpu").to(device).eval()
    restorer = Restorer(model, device, pick_precision(precision, device, model), steps, seed, tile, overlap,
                        tile_batch)
    return model, restorer


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
                              args.jpeg_quality, args.max_pixels, args.threads)
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
                             "`python -m src.train experiment=diffuir_t_builtin` and `python -m src.export --ckpt "
                             f"<its last.ckpt> --format safetensors --out {ckpt}`")
        if not ckpt.exists():
            raise ValueError(f"--ckpt {ckpt}: checkpoint not found (a .ckpt written by src.train, or an export "
                             "folder of src.export)")
        args.ckpt = str(ckpt)
        device = pick_device(args.device)
        pick_precision(args.precision, device)  # validates the flag before the model is loaded
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out {out_dir} exists and is not a folder")
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
                                        args.tile_overlap, args.tile_batch)
        engine = use_engine(model, args.engine, device, restorer.precision)
    except (FileNotFoundError, KeyError, TypeError, ValueError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a model that fails to build (e.g. frozen weight files it names are missing)
        print(f"error: cannot load a model from {args.ckpt}: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_USAGE
    precision = restorer.precision
    print(f"engine: {engine}", flush=True)
    target = (getattr(model, "model_config", None) or {}).get("_target_", type(model).__name__)
    print(f"model: {type(model).__name__} ({target}, {parameter_count(model):,} parameters) from {args.ckpt}\n"
          f"device: {device}, precision: {precision}, steps: {args.steps or 'model default'}, seed: {args.seed}, "
          f"tiles: {f'{restorer.tile} px, overlap {restorer.overlap}' if restorer.tile else 'off'}\n"
          f"{len(plan.jobs)} image(s) -> {out_dir}", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    cleanup = describe_cleanup(*remove_stale_temporaries(sorted({j.output.parent for j in plan.jobs})))
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
