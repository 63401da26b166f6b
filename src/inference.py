"""Restoration with any trained model of the suite: device and precision choice, the :class:`Restorer` (padding,
tiling, seeded noise), engine choice, and job planning (inputs → outputs). The library under ``src.restore`` (the
command), the app and the benchmarks; it imports no model package: models are rebuilt from their checkpoint by
:func:`src.utils.checkpoints.load_restoration_model` and used through the protocol below.

The model protocol (duck-typed, so new models need no change here):

* ``restore(lq, steps=None, generator=None)``: B×3×H×W in [0, 1] → B×3×H×W in [0, 1]. If it also takes
  ``noise`` (the sampler's start noise, shaped like ``lq``; :meth:`src.diffuir.module.DiffUIRModule.restore`),
  every tile gets its crop of one seeded noise field over the whole image, so tiled and untiled results agree.
  Other models get a seeded generator per tile batch.
* optional ``detect_degradation(lq) -> list[str]`` (one label per image; Diff-Restorer's degradation classifier).
* optional ``pad_multiple`` (or ``net.pad_multiple``): the size multiple the network needs.
* optional ``preferred_precision`` (``"32"``, ``"bf16"`` or ``"16"``): what precision ``auto`` uses on CUDA
  (float32 otherwise, and for models that do not say).
* optional ``use_engine(name, device, precision)``: the model's engine hook (DiffUIR's runs its sampler on an
  engine of :mod:`src.diffuir.engines` and chooses its precision there, ``--precision auto`` included); it returns
  the engine's name, or an object with ``engine``, ``precision`` (what it computes in) and ``note`` (why, one
  line); models without one run in PyTorch (engines ``auto`` / ``eager``).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from src.utils.checkpoints import load_restoration_model
from src.utils.images import IMAGE_EXTENSIONS
from src.utils.padding import pad_to_multiple
from src.utils.tiling import BlockNoise, fitted_tile, mix_seed, tile_boxes, tiled_apply

# The weights used when no checkpoint is given: DiffUIR-T trained by the suite on ~40 real photos
# (conf/experiment/diffuir_t_photos.yaml, src/data/photo_folder.py; exported with `python -m src.export`).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "pretrained" / "diffuir_t_photos"
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


def takes_noise(model) -> bool:
    """Whether ``model.restore`` takes the sampler's start noise (``noise=``), so tiles can share one noise field."""
    return "noise" in inspect.signature(model.restore).parameters


def choose_engine(model, name: str = "auto", device: torch.device | str | None = None,
                  precision: str = "32") -> tuple[str, str, str]:
    """Run ``model`` on inference engine ``name`` through its own ``use_engine`` hook; returns (engine used,
    precision it computes in, why: one line or ""). ``precision`` ``auto`` is the hook's to resolve (DiffUIR on a
    CPU with native bf16: its bf16 engine if close enough to fp32); hooks that only name their engine, and models
    without a hook, compute in the precision asked (``auto`` → ``32``).

    Models without a hook run in PyTorch as they are: they accept ``auto`` and ``eager`` (``"pytorch"`` is
    returned) and refuse the others."""
    asked = "32" if precision == "auto" else precision
    hook = getattr(model, "use_engine", None)
    if callable(hook):
        choice = hook(name, device, precision)
        if isinstance(choice, str):
            return choice, asked, ""
        return choice.engine, choice.precision, choice.note
    if name in ("auto", "eager"):
        return "pytorch", asked, ""
    raise ValueError(f"--engine {name}: only DiffUIR models have inference engines ({type(model).__name__} "
                     "runs in PyTorch); use --engine auto or eager")


def use_engine(model, name: str = "auto", device: torch.device | str | None = None, precision: str = "32") -> str:
    """:func:`choose_engine`'s engine name."""
    return choose_engine(model, name, device, precision)[0]


def check_settings(steps: int | None = None, seed: int = 0, tile: int = 0, overlap: int = 0, tile_batch: int = 1,
                   jpeg_quality: int = 95, max_pixels: int = 0, threads: int | None = None,
                   ensemble: int = 1) -> list[str]:
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
    if tile_batch is not None and tile_batch < 1:
        problems.append(f"--tile-batch {tile_batch}: must be at least 1 tile per model call")
    if not 1 <= jpeg_quality <= 100:
        problems.append(f"--jpeg-quality {jpeg_quality}: must be in 1..100")
    if max_pixels < 0:
        problems.append(f"--max-pixels {max_pixels}: must be 0 (no limit) or a positive pixel count")
    if threads is not None and threads < 1:
        problems.append(f"--threads {threads}: must be at least 1")
    if ensemble not in ENSEMBLES:
        problems.append(f"--self-ensemble {ensemble}: must be one of {', '.join(map(str, ENSEMBLES))} (1: off)")
    return problems


# pixels neighbouring tiles share (blended): 32 rather than 64 computes 12% fewer multiply-adds on a 12 MP photo, and
# the tiled result stayed as close to the untiled one (50.7 against 48.5 dB PSNR on a 960×1440 photo, shipped weights)
DEFAULT_OVERLAP = 32

ENSEMBLES = (1, 2, 4, 8)  # --self-ensemble: how many of the eight flips and quarter turns are averaged
# the order they are taken in (dihedral's k): 2 = the image and its mirror, which keep up as up (haze thins towards
# the sky, rain falls down: the shipped weights lose 5.0 dB on haze and 4.7 dB on rain averaged over all eight); 4
# adds the two upside-down ones; 8 the quarter turns
ENSEMBLE_ORDER = (0, 4, 2, 6, 1, 5, 3, 7)


def dihedral(rgb: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """Transform ``k`` of the eight flips and quarter turns of an H×W×C image (k % 4 quarter turns, then a
    left-right flip for k ≥ 4), or its inverse; k = 0 is the identity."""
    if inverse:
        rgb = rgb[:, ::-1] if k >= 4 else rgb
        return np.ascontiguousarray(np.rot90(rgb, -(k % 4), axes=(0, 1)))
    out = np.rot90(rgb, k % 4, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


class Cancelled(Exception):
    """Raised by :meth:`Restorer.restore` when its ``should_stop()`` says so (checked after every sampling step)."""


class Restorer:
    """Restores H×W×3 float images with a model of the suite: padding, tiling, seeded noise, precision.

    ``tile``: sides above it (after padding) are restored in ``tile``×``tile`` tiles overlapping by ``overlap``
    pixels (:meth:`plan`: every tile of an image has one shape, fitted so that neighbours overlap by ``overlap``
    plus at most the size multiple; ``fit_tiles=False``: the ``tile``-sided tiles of earlier versions);
    ``tile_batch`` tiles per model call (None: the engine's ``batch``, e.g. one per OpenVINO stream, else 1); 0
    restores every image in one pass. ``seed`` fixes the noise. ``ensemble`` > 1: the mean of the restorations of
    that many flips and quarter turns of the image (:func:`dihedral`; the "×8 self-ensemble" of EDSR and BasicSR),
    ``ensemble`` times the work. Settings that make no sense (``steps`` < 1,
    negative ``tile`` / ``overlap``, ...) raise :class:`ValueError`. ``engine``, ``precision`` and
    ``engine_note``: what the model runs on, in which numerics and why (:func:`choose_engine`; ``engine_line`` is
    the one line ``src.restore`` prints first and the app shows). Used by ``src.restore``, the app and the
    benchmarks alike.
    """

    def __init__(self, model, device: torch.device | str = "cpu", precision: str = "32", steps: int | None = None,
                 seed: int = 0, tile: int = 512, overlap: int = DEFAULT_OVERLAP, tile_batch: int | None = None,
                 engine: str | None = None, engine_note: str = "", fit_tiles: bool = True, ensemble: int = 1):
        if not callable(getattr(model, "restore", None)):
            raise TypeError(f"{type(model).__name__} has no restore(lq, steps, generator) method")
        problems = check_settings(steps=steps, seed=seed, tile=tile, overlap=overlap, tile_batch=tile_batch,
                                  ensemble=ensemble)
        if problems:
            raise ValueError("; ".join(problems))
        self.model, self.device = model, torch.device(device)
        self.precision, self.steps, self.seed = precision, steps, int(seed)
        self.multiple = size_multiple(model)
        self.tile = 0 if not tile else max(self.multiple, (int(tile) // self.multiple) * self.multiple)
        if self.tile and not 0 <= overlap < self.tile:
            raise ValueError(f"--tile-overlap must be in [0, {self.tile}) for tiles of {self.tile} pixels")
        self.overlap, self.tile_batch = int(overlap), None if tile_batch is None else max(1, int(tile_batch))
        self.fit_tiles, self.ensemble = fit_tiles, int(ensemble)
        self.engine, self.engine_note = engine, engine_note
        self.takes_noise = takes_noise(model)
        self.reports_steps = "callback" in inspect.signature(model.restore).parameters
        self.detects = callable(getattr(model, "detect_degradation", None))

    @property
    def engine_line(self) -> str:
        """``engine: NAME, precision P (why)``: what runs, in which numerics."""
        engine = self.engine or getattr(getattr(self.model, "inference_net", None), "name", None) or "pytorch"
        return f"engine: {engine}, precision {self.precision}" + (f" ({self.engine_note})" if self.engine_note else "")

    def batch(self) -> int:
        """Tiles per model call: ``tile_batch``, else the model's engine's preferred batch (1 without one)."""
        if self.tile_batch is not None:
            return self.tile_batch
        preferred = getattr(getattr(self.model, "inference_net", None), "batch", 1)
        return preferred if isinstance(preferred, int) and preferred > 0 else 1

    @staticmethod
    def plan(height: int, width: int, multiple: int, tile: int, overlap: int,
             fit: bool = True) -> tuple[int, tuple[int, int]]:
        """(number of tiles, tile shape) for an image of ``height``×``width`` padded to ``multiple``: one tile of
        the padded size when it fits in ``tile`` (or ``tile`` is 0); else tiles of one shape whose sides are the
        smallest multiples of ``multiple`` that cover each axis with as many tiles as ``tile`` needs
        (:func:`~src.utils.tiling.fitted_tile`: no pixel computed twice beyond the overlap and the rounding), or
        ``tile`` itself with ``fit=False``."""
        h, w = (math.ceil(s / multiple) * multiple for s in (height, width))
        if not tile or (h <= tile and w <= tile):
            return 1, (h, w)
        shape = (fitted_tile(h, tile, overlap, multiple), fitted_tile(w, tile, overlap, multiple)) if fit else \
            (min(tile, h), min(tile, w))
        return len(tile_boxes(h, w, shape, overlap)), shape

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _restore_batch(self, lq: torch.Tensor, boxes, field: BlockNoise, callback=None) -> torch.Tensor:
        lq = lq.to(self.device, torch.float32)
        extra = {"callback": callback} if callback is not None and self.reports_steps else {}
        with torch.inference_mode(), self._autocast():
            if self.takes_noise:
                noise = torch.stack([field.crop(*box) for box in boxes]).to(self.device)
                out = self.model.restore(lq, steps=self.steps, noise=noise, **extra)
            else:
                gen = torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, *boxes[0][:2]))
                out = self.model.restore(lq, steps=self.steps, generator=gen, **extra)
        return out.float().clamp(0, 1).cpu()

    def num_tiles(self, height: int, width: int) -> int:
        """How many tiles an image of this size takes (1 if it is not tiled), over every pass of the ensemble."""
        return sum(self._tiles(*((width, height) if k % 2 else (height, width))) for k in self.transforms)

    @property
    def transforms(self) -> tuple[int, ...]:
        """The :func:`dihedral` transforms of the ensemble's passes (``(0,)`` without one)."""
        return ENSEMBLE_ORDER[:self.ensemble]

    def _tiles(self, height: int, width: int) -> int:
        return self.plan(height, width, self.multiple, self.tile, self.overlap, self.fit_tiles)[0]

    def restore(self, rgb: np.ndarray, progress=None, step_progress=None, should_stop=None) -> np.ndarray:
        """Restore one float32 H×W×3 image in [0, 1]; returns the same shape. ``progress(n)`` counts tiles;
        ``step_progress(done, total)`` counts sampling steps over the whole image (models whose ``restore`` takes a
        ``callback``); ``should_stop()`` is checked after every step and tile and raises :class:`Cancelled`.
        With ``ensemble`` > 1, the mean over the passes, each undone (:func:`dihedral`); progress spans them all."""
        if self.ensemble == 1:
            return self._restore_once(rgb, progress, step_progress, should_stop)
        h, w = rgb.shape[:2]
        calls = [math.ceil(self._tiles(*((w, h) if k % 2 else (h, w))) / self.batch()) for k in self.transforms]
        total = np.zeros(rgb.shape[:2] + (3,), np.float64)
        for i, k in enumerate(self.transforms):
            def steps(done: int, of: int, i=i) -> None:  # one pass's (done, of) → the ensemble's
                per_call = of // calls[i]
                step_progress(sum(calls[:i]) * per_call + done, sum(calls) * per_call)

            out = self._restore_once(dihedral(rgb, k), progress, steps if step_progress is not None else None,
                                     should_stop)
            total += dihedral(out, k, inverse=True)
        return (total / self.ensemble).astype(np.float32)

    def _restore_once(self, rgb: np.ndarray, progress=None, step_progress=None, should_stop=None) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
        padded, (h, w) = pad_to_multiple(x, self.multiple)
        field = BlockNoise(self.seed, channels=padded.shape[0])
        ph, pw = padded.shape[-2:]
        calls, call = math.ceil(self._tiles(h, w) / self.batch()), [0]

        def check() -> None:
            if should_stop is not None and should_stop():
                raise Cancelled("stopped")

        def on_step(done: int, total: int) -> None:
            if step_progress is not None:
                step_progress(call[0] * total + done, calls * total)
            check()

        def on_tiles(n: int) -> None:
            call[0] += 1
            if progress is not None:
                progress(n)
            check()

        check()
        callback = on_step if step_progress is not None or should_stop is not None else None
        if self.tile and (ph > self.tile or pw > self.tile):
            _, shape = self.plan(ph, pw, self.multiple, self.tile, self.overlap, self.fit_tiles)
            out = tiled_apply(lambda t, b: self._restore_batch(t, b, field, callback), padded, shape,
                              self.overlap, self.batch(), on_tiles)
        else:
            out = self._restore_batch(padded[None], [(0, 0, ph, pw)], field, callback)[0]
            on_tiles(1)
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


def load_restorer(ckpt: str | Path, device: torch.device | str = "cpu", precision: str = "auto",
                  steps: int | None = None, seed: int = 0, tile: int = 512, overlap: int = DEFAULT_OVERLAP,
                  tile_batch: int | None = None, engine: str | None = None,
                  ensemble: int = 1) -> tuple[torch.nn.Module, Restorer]:
    """(model, :class:`Restorer`) for a checkpoint or export folder, through the suite's one safe loader
    (:func:`src.utils.checkpoints.load_restoration_model`), the model on inference engine ``engine`` in
    ``precision`` (:func:`choose_engine`; on the CPU ``auto`` is the model's choice, DiffUIR's bf16 engine where
    the CPU has native bf16 and it passes its check; elsewhere :func:`pick_precision`); errors as those.
    ``engine`` None: no engine is chosen (the caller does, with :func:`use_engine`) and ``precision`` is
    :func:`pick_precision`'s."""
    device = torch.device(device)
    model = load_restoration_model(ckpt, map_location="cpu").to(device).eval()
    if engine is None:
        return model, Restorer(model, device, pick_precision(precision, device, model), steps, seed, tile, overlap,
                               tile_batch, ensemble=ensemble)
    asked = precision if device.type == "cpu" and precision == "auto" else pick_precision(precision, device, model)
    name, used, note = choose_engine(model, engine, device, asked)
    restorer = Restorer(model, device, used, steps, seed, tile, overlap, tile_batch, engine=name, engine_note=note,
                        ensemble=ensemble)
    return model, restorer


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
                    add(m, Path(m.name), scanned_from=Path(spec))  # --out's files never match (recursive globs)
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
