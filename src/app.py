"""A restoration web app: ``python -m src.app [--ckpt PATH ...]`` (``make app``), then open the URL.

Upload one or more images (any format :mod:`src.utils.images` reads: 8/16-bit PNG and TIFF, JPEG, WebP, gray,
RGBA, ...; a file that is not one is refused at upload, with the reader's reason), see how long they will take
(seconds per megapixel measured for the model and engine in use), press *Restore*: progress per sampling step and
per tile with elapsed and remaining time, a *Stop* button, then a before/after slider, the time taken and the
restored files to download at full size and bit depth. The page says what the loaded weights were trained to fix
(their config's ``trained_tasks``) and, for models with ``detect_degradation``, the degradation they see.

One code path with ``python -m src.restore``: images are read and written with :func:`~src.utils.images.read_image`
/ :func:`~src.utils.images.write_image` and restored by the same Restorer (padding, tiling, one seeded noise field),
so the same seed gives the same bytes as the command line.

Jobs: one at a time, in arrival order, on one worker thread (:class:`JobQueue`); each visitor (browser tab) has at
most one job waiting or running and sees its place in the queue; *Stop*, or closing the tab, ends it within one
sampling step. Refusals (bad files, bad settings) are shown in the page and logged as one line each.

Gradio is an optional extra (``pip install -e '.[app]'``; ``make app`` installs it). The server binds to 127.0.0.1
unless ``--host`` says otherwise, and everything it writes (uploads, previews, results) stays in one temporary
folder of its own (``GRADIO_TEMP_DIR``), removed when it stops.
"""

from __future__ import annotations

import argparse
import html
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EXIT_USAGE = 2
PREVIEW_SIDE = 2048  # the slider shows images downscaled to this side at most; downloads are full size
INSTALL_HINT = "pip install -e '.[app]'"
CALIBRATION_SIDE = 512  # the start-up speed measurement: one sampling step on a 512×512 image (a default tile)
log = logging.getLogger("src.app")

# ---------------------------------------------------------------------------------------------------------- models
TASK_WORDS = {"noise": "noise", "low_light": "low light", "haze": "haze", "rain": "rain streaks",
              "raindrop": "raindrops", "snow": "snow", "blur": "blur", "jpeg": "JPEG artefacts"}
PRECISION_WORDS = {"32": "float32", "bf16": "bfloat16", "16": "float16"}


@dataclass
class Speed:
    """Measured restoration speed of one loaded model: seconds per megapixel per sampling step, pooled over every
    run measured (the start-up calibration, then each restored image). Pixels are those the network processes:
    padded, and tiles counted with their overlap. ``setup``: the seconds a new input shape costs once (e.g. an
    engine compiling for it; measured at calibration as first run minus second run), for shapes not among the
    few used last (engines keep a few compiled)."""

    seconds: float = 0.0
    work: float = 0.0   # megapixel-steps
    runs: int = 0
    setup: float = 0.0
    shapes: list = field(default_factory=list)
    keep: int = 4

    def is_new(self, shape) -> bool:
        return shape is not None and shape not in self.shapes

    def remember(self, shape) -> None:
        if shape is not None:
            self.shapes = [s for s in self.shapes if s != shape][-(self.keep - 1):] + [shape]

    def add(self, seconds: float, work: float, shape=None) -> None:
        """One measured run of ``work`` megapixel-steps on an input of ``shape`` (its setup, if new, left out)."""
        compute = seconds - (self.setup if self.is_new(shape) else 0.0)
        self.remember(shape)
        if work > 0 and compute > 0:
            self.seconds, self.work, self.runs = self.seconds + compute, self.work + work, self.runs + 1

    @property
    def rate(self) -> float | None:
        return self.seconds / self.work if self.work > 0 else None

    def estimate(self, work: float, shapes=()) -> float | None:
        """Seconds for ``work`` megapixel-steps on inputs of ``shapes`` (each new one adds ``setup`` once)."""
        if self.rate is None:
            return None
        return self.rate * work + self.setup * len({s for s in shapes if self.is_new(s)})


@dataclass
class LoadedModel:
    model: object
    device: object
    precision: str
    engine: str
    name: str                   # e.g. DiffUIR-T
    parameters: int
    steps: int | None           # the model's own number of sampling steps
    trained_tasks: list[str] | None
    detects: bool
    precision_note: str = ""    # why this engine and precision (e.g. the bf16 check's PSNR against fp32)
    speed: Speed = field(default_factory=Speed)

    @property
    def info(self) -> str:
        """One line: name, size, engine, precision, device."""
        return (f"{self.name} · {self.parameters / 1e6:.2f} M parameters · engine {self.engine} · "
                f"{PRECISION_WORDS.get(self.precision, self.precision)} on {str(self.device).upper()}"
                + (f" · {self.steps} sampling steps" if self.steps else ""))

    def describe(self) -> str:
        """What the page says about the model (Markdown): its line, the tasks it was trained on, detection."""
        from src.tasks import TASKS

        lines = [f"**Model:** {self.info}"]
        if self.precision_note:
            lines.append(f"**Numerics:** {self.precision_note}.")
        if self.trained_tasks:
            known = [TASK_WORDS.get(t, t) for t in self.trained_tasks]
            others = [TASK_WORDS[t] for t in TASKS if t not in self.trained_tasks]
            lines.append(f"**Trained to remove:** {', '.join(known)}."
                         + (f" Not trained on {', '.join(others)}: expect little change there." if others else ""))
        else:
            lines.append("**Trained to remove:** not recorded in this checkpoint (its config has no "
                         "`trained_tasks`).")
        if self.detects:
            lines.append("**Degradation:** detected per image by the model's classifier (shown in the results).")
        else:
            family = re.split(r"[- ]", self.name)[0]  # DiffUIR-T -> DiffUIR
            lines.append(f"**Degradation:** not detected: {family} has no degradation detector, "
                         "so it restores every image with what it learned, whatever the image suffers from.")
        return "  \n".join(lines)


def model_name(model) -> str:
    """A readable name: the export's size (``DiffUIR-T``), a DiffUIR size from the network's width, else the
    method (``Diff-Restorer``) or class name."""
    size = (getattr(model, "export_info", None) or {}).get("size")
    if size:
        return str(size)
    net = getattr(model, "eval_net", None)
    if net is not None and hasattr(model, "diffusion"):
        from src.diffuir.unet import SIZES

        dim, mults = getattr(net, "dim", None), getattr(net, "dim_mults", None)
        config = ((getattr(model, "model_config", None) or {}).get("net") or {})
        dim, mults = dim or config.get("dim"), mults or config.get("dim_mults")
        for name, spec in SIZES.items():
            if dim == spec["dim"] and mults is not None and tuple(mults) == tuple(spec["dim_mults"]):
                return f"DiffUIR-{name}"
        return f"DiffUIR (width {dim})" if dim else "DiffUIR"
    if "DiffRestorer" in type(model).__name__:
        return "Diff-Restorer"
    return type(model).__name__


def trained_tasks(model) -> list[str] | None:
    """The tasks the weights were trained on, from the checkpoint's config (``trained_tasks``), if recorded."""
    for config in (getattr(model, "model_config", None), getattr(model, "hparams", None)):
        tasks = (config or {}).get("trained_tasks") if hasattr(config or {}, "get") else None
        if tasks:
            return [str(t) for t in tasks]
    return None


def checkpoint_label(path: str) -> str:
    """A short name for the checkpoint menu: the path relative to the working folder, else its last two parts."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(Path(*p.parts[-2:]))


class ModelCache:
    """Checkpoints by path, each loaded once (on first use) with the suite's one loader, its speed measured."""

    def __init__(self, paths: list[str], device: str = "auto", precision: str = "auto", engine: str = "auto",
                 calibration_side: int = CALIBRATION_SIDE):
        self.paths, self.device_name, self.precision_name = list(paths), device, precision
        self.engine_name, self.calibration_side = engine, calibration_side
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def loaded(self, path: str) -> LoadedModel | None:
        """The model if it is loaded already (never loads)."""
        return self._loaded.get(path)

    def get(self, path: str) -> LoadedModel:
        if path not in self.paths:
            raise ValueError(f"unknown checkpoint {path!r}: the app was started with {self.paths}")
        with self._lock:
            if path not in self._loaded:
                from src.inference import load_restorer, pick_device
                from src.utils.checkpoints import parameter_count

                device = pick_device(self.device_name)
                # as src.restore loads it: engine and precision chosen together (--precision auto may pick bf16)
                model, restorer = load_restorer(path, device, self.precision_name, engine=self.engine_name)
                loaded = LoadedModel(model, device, restorer.precision, restorer.engine, model_name(model),
                                     parameter_count(model), default_steps(model), trained_tasks(model),
                                     restorer.detects, precision_note=restorer.engine_note)
                calibrate(loaded, self.calibration_side)
                self._loaded[path] = loaded
            return self._loaded[path]


def default_steps(model) -> int | None:
    """The model's own number of sampling steps (what ``steps=None`` uses), if it says."""
    for owner in (getattr(model, "diffusion", None), model):
        value = getattr(owner, "sampling_steps", None)
        if isinstance(value, int):
            return value
    hparams = getattr(model, "hparams", None) or {}
    value = hparams.get("sampling_steps") if hasattr(hparams, "get") else None
    return value if isinstance(value, int) else None


def work_megapixels(restorer, height: int, width: int) -> float:
    """Megapixels the network processes for one image: padded to the model's multiple, tiles with their overlap."""
    from src.utils.tiling import tile_boxes

    h, w = (math.ceil(s / restorer.multiple) * restorer.multiple for s in (height, width))
    if not restorer.tile or (h <= restorer.tile and w <= restorer.tile):
        return h * w / 1e6
    return sum(th * tw for _, _, th, tw in tile_boxes(h, w, restorer.tile, restorer.overlap)) / 1e6


def network_shape(restorer, height: int, width: int) -> tuple[int, int]:
    """The input shape the network meets for one image: the tile, or the whole padded image."""
    h, w = (math.ceil(s / restorer.multiple) * restorer.multiple for s in (height, width))
    if restorer.tile and (h > restorer.tile or w > restorer.tile):
        from src.utils.tiling import tile_boxes

        _, _, th, tw = tile_boxes(h, w, restorer.tile, restorer.overlap)[0]
        return th, tw
    return h, w


def calibrate(loaded: LoadedModel, side: int = CALIBRATION_SIDE) -> None:
    """Measure the model's speed once: one sampling step on a ``side``² image, timed on its second run (the first
    warms up, e.g. compiles the engine for this shape: the shape of the default tiles), into ``loaded.speed``.
    Every finished job adds its own timing."""
    from src.inference import Restorer

    restorer = Restorer(loaded.model, loaded.device, loaded.precision, 1, 0, tile=0)
    image = np.random.default_rng(0).random((side, side, 3), dtype=np.float32)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        restorer.restore(image)
        times.append(time.perf_counter() - started)
    work, shape = work_megapixels(restorer, side, side), network_shape(restorer, side, side)
    loaded.speed.setup = max(0.0, times[0] - times[1])
    loaded.speed.remember(shape)
    loaded.speed.add(times[1], work, shape)


def duration(seconds: float) -> str:
    """``8 s``, ``1 min 40 s``, ``1 h 5 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s" if seconds % 60 else f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


# ---------------------------------------------------------------------------------------------------------- messages
FIELD_LABELS = {"--tile-overlap": "Tile overlap", "--tile": "Tile size", "--seed": "Seed",
                "--steps": "Sampling steps", "--max-pixels": "--max-pixels"}


def settings_problems(steps, seed, tile, overlap) -> list[str]:
    """What is wrong with the page's settings, in the page's own words (``Tile size``, not ``--tile``); [] if
    nothing. The rules are src.restore's (:func:`~src.restore.check_settings`)."""
    from src.inference import check_settings

    values = {"Sampling steps": steps, "Seed": seed, "Tile size": tile, "Tile overlap": overlap}
    problems = [f"{label}: enter a whole number" for label, v in values.items()
                if v is None or (isinstance(v, float) and (not math.isfinite(v) or v != int(v)))]
    if problems:
        return problems
    if steps < 0:
        return [f"Sampling steps {int(steps)}: must be 0 (the model's own number) or more"]
    problems = check_settings(steps=int(steps) or None, seed=int(seed), tile=int(tile), overlap=int(overlap))
    pattern = re.compile("|".join(re.escape(k) for k in FIELD_LABELS))
    return [pattern.sub(lambda m: FIELD_LABELS[m.group(0)], p) for p in problems]


def refusal(error) -> str:
    """The reason an image is refused, naming this app's options (the reader's own message names src.restore's)."""
    if getattr(error, "kind", "") == "too_large":
        return (f"{error.problem}: the limit of this app (start it with a higher --max-pixels, or --max-pixels 0 "
                "for none: python -m src.app --max-pixels N)")
    return error.reason


def check_uploads(files: list[str], max_pixels: int | None) -> tuple[list[str], list[tuple[str, str]]]:
    """(images accepted, [(name, reason)] refused): every upload decoded with the suite's reader, as Restore will."""
    from src.utils.images import ImageReadError, decode_image

    accepted, refused = [], []
    for f in files:
        try:
            decode_image(f, max_pixels=max_pixels)
            accepted.append(f)
        except ImageReadError as e:
            refused.append((Path(f).name, refusal(e)))
            log.info("refused upload %s: %s", Path(f).name, refusal(e))
    return accepted, refused


def refused_markdown(refused: list[tuple[str, str]]) -> str:
    return "\n".join(["**Refused:**", ""] + [f"- `{name}`: {reason}" for name, reason in refused]) if refused else ""


# ---------------------------------------------------------------------------------------------------------- jobs
class Busy(Exception):
    """This visitor already has a job waiting or running."""


class Job:
    """One visitor's restoration: waiting → running → done | stopped | failed. ``run(job)`` does the work; it calls
    ``job.report(fraction, detail)`` and raises :class:`~src.inference.Cancelled` once ``job.should_stop()``."""

    def __init__(self, session: str, run: Callable[[Job], object], estimate: float | None = None):
        self.session, self.run, self.estimate = session, run, estimate
        self.state, self.result, self.error = "waiting", None, ""
        self.submitted, self.started, self.ended = time.monotonic(), None, None
        self.fraction, self.detail, self.why_stopped = 0.0, "", ""
        self._first: tuple[float, float] | None = None   # (time, fraction) of the first progress made
        self._last: tuple[float, float] | None = None    # and of the latest
        self._stop, self._done = threading.Event(), threading.Event()

    def report(self, fraction: float, detail: str = "", now: float | None = None) -> None:
        self.fraction, self.detail = min(1.0, max(0.0, fraction)), detail
        if self.fraction > 0:
            self._last = (now or time.monotonic(), self.fraction)
            self._first = self._first or self._last

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has ended (done, stopped or failed)."""
        return self._done.wait(timeout)

    def elapsed(self, now: float | None = None) -> float:
        if self.started is None:
            return 0.0
        return (self.ended if self.ended is not None else (now or time.monotonic())) - self.started

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left, counting down between progress reports: the estimate less the time spent until two
        reports measure the pace (from the first on, so that a one-off start-up cost, e.g. an engine compiling for
        this size, does not count); None when unknown (no estimate, or past it)."""
        if self.state == "waiting":
            return self.estimate
        if self.state != "running":
            return 0.0
        now = now or time.monotonic()
        if self._first is not None and self._last[1] > self._first[1]:
            (t0, f0), (t1, f1) = self._first, self._last
            return max(0.0, (t1 - t0) / (f1 - f0) * (1 - f1) - (now - t1))
        if self.estimate is not None and self.elapsed(now) < self.estimate:
            return self.estimate - self.elapsed(now)
        if self._last is not None:  # past the estimate, one report: the pace since the start
            t1, f1 = self._last
            return max(0.0, (t1 - self.started) / f1 * (1 - f1) - (now - t1))
        return None

    def _end(self, state: str, error: str = "") -> None:
        self.state, self.error, self.ended = state, error, time.monotonic()
        self._done.set()


class JobQueue:
    """Jobs run one at a time, in arrival order, on one worker thread; one job per session (visitor) at a time.

    :meth:`cancel` removes a waiting job at once and asks a running one to stop (its ``should_stop()``)."""

    def __init__(self):
        self._jobs: list[Job] = []        # running first, then the waiting ones in order
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False

    def submit(self, session: str, run: Callable[[Job], object], estimate: float | None = None) -> Job:
        with self._cond:
            if any(j.session == session for j in self._jobs):
                raise Busy("you already have a job waiting or running: wait for it, or press Stop first")
            job = Job(session, run, estimate)
            self._jobs.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="uir-app-jobs", daemon=True)
                self._worker.start()
            self._cond.notify_all()
            return job

    def position(self, job: Job) -> int:
        """0: running (or about to); k: k jobs ahead of it; -1: not in the queue (ended)."""
        with self._cond:
            return self._jobs.index(job) if job in self._jobs else -1

    def wait_ahead(self, job: Job) -> float | None:
        """Seconds until ``job`` starts, summed over the jobs ahead of it (None if one has no estimate)."""
        with self._cond:
            ahead = self._jobs[:self._jobs.index(job)] if job in self._jobs else []
        left = [j.remaining() for j in ahead]
        return None if any(v is None for v in left) else sum(left)

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)

    def job_of(self, session: str) -> Job | None:
        with self._cond:
            return next((j for j in self._jobs if j.session == session), None)

    def cancel(self, session: str, why: str = "stopped") -> Job | None:
        """End ``session``'s job: a waiting one at once, a running one at its next sampling step or tile."""
        with self._cond:
            job = next((j for j in self._jobs if j.session == session), None)
            if job is None:
                return None
            job.why_stopped = why
            job._stop.set()
            if job.state == "waiting":
                self._jobs.remove(job)
                job._end("stopped")
                self._cond.notify_all()
        return job

    def close(self) -> None:
        """Stop every job and the worker (tests; the server's exit)."""
        with self._cond:
            self._closed = True
            for job in self._jobs:
                job._stop.set()
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=60)

    def _work(self) -> None:
        from src.inference import Cancelled

        while True:
            with self._cond:
                while not self._closed and not self._jobs:
                    self._cond.wait()
                if self._closed:
                    for job in self._jobs:
                        job._end("stopped")
                    self._jobs.clear()
                    return
                job = self._jobs[0]
                job.state, job.started = "running", time.monotonic()
            try:
                if job.should_stop():
                    raise Cancelled("stopped before it started")
                job.result = job.run(job)
            except Cancelled:
                end = ("stopped", "")
                log.info("job of %s stopped (%s) after %.1f s", job.session[:8], job.why_stopped or "stopped",
                         time.monotonic() - job.started)
            except Exception as e:  # the job's own failure: reported to its visitor, the queue goes on
                end = ("failed", f"{type(e).__name__}: {e}")
                log.error("job of %s failed: %s", job.session[:8], end[1])
            else:
                end = ("done", "")
            with self._cond:
                self._jobs.remove(job)
                job._end(*end)
                self._cond.notify_all()


def status_html(job: Job, position: int = 0, wait: float | None = None, now: float | None = None) -> str:
    """The line under Restore: queue position, or a progress bar with the step/tile and elapsed/remaining time."""
    if job.state == "waiting" and position <= 0:
        return "<div class='status waiting'>Starting…</div>"
    if job.state == "waiting":
        text = (f"Waiting: {position} job{'s' * (position != 1)} ahead of yours (you are number {position + 1} in "
                "the queue)" + (f", about {duration(wait)} before yours starts" if wait is not None else "") + ".")
        return f"<div class='status waiting'>{html.escape(text)}</div>"
    if job.state == "running":
        left = job.remaining(now)
        percent = f"{job.fraction:.1%}" if job.fraction < 0.1 else f"{job.fraction:.0%}"
        text = (f"{job.detail or 'starting'} · {percent} · {duration(job.elapsed(now))} elapsed"
                + (f", about {duration(left)} left" if left is not None else
                   ", taking longer than estimated" if job.estimate is not None else ""))
        return (f"<div class='status running'><progress value='{job.fraction:.3f}' max='1'></progress>"
                f"<span>{html.escape(text)}</span></div>")
    if job.state == "done":
        return f"<div class='status done'>Done in {duration(job.elapsed())}.</div>"
    if job.state == "stopped":
        when = f" after {duration(job.elapsed())}" if job.started is not None else " before it started"
        return f"<div class='status stopped'>Stopped{when}: nothing was written.</div>"
    return f"<div class='status failed'>Failed: {html.escape(job.error)}</div>"

# ---------------------------------------------------------------------------------------------------------- restoring
@dataclass
class Outcome:
    name: str                      # the uploaded file's name
    output: Path | None = None     # the restored file (full size, input's format and bit depth)
    before: np.ndarray | None = None   # 8-bit previews for the slider
    after: np.ndarray | None = None
    size: str = ""
    degradation: str = ""
    seconds: float = 0.0
    notes: str = ""
    error: str = ""


def _preview(rgb: np.ndarray) -> np.ndarray:
    """An 8-bit RGB preview, area-downscaled so its longer side is at most :data:`PREVIEW_SIDE`."""
    from PIL import Image

    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
    if max(img.size) > PREVIEW_SIDE:
        img.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BOX)
    return np.asarray(img)


def output_name(source: Path) -> str:
    """``photo.tif`` → ``photo_restored.tif`` (the input's format; PNG when its extension cannot be written)."""
    from src.utils.images import output_format

    try:
        output_format(source)
        ext = source.suffix
    except ValueError:
        ext = ".png"
    return f"{source.stem}_restored{ext}"


def restore_files(files: list[str], restorer, out_dir: Path, max_pixels: int | None,
                  progress: Callable[[float, str], None] | None = None, should_stop: Callable[[], bool] | None = None,
                  speed: Speed | None = None) -> list[Outcome]:
    """Read, restore and write each upload with the CLI's functions.

    ``progress(fraction, detail)``: the fraction of the work done (pixels the network processes, so a large image
    weighs more) after every sampling step (every tile for models that do not report steps), and what is being
    done (``photo.png (1 of 2) · tile 3 of 24 · step 2 of 3``). ``should_stop()`` is checked between steps; the
    Restorer then raises ``Cancelled``. ``speed``: gets each image's measured restore time. An unreadable file
    gets its reader's reason (:func:`refusal`) and the others go on.
    """
    from src.utils.images import ImageReadError, read_image, write_image

    images, outcomes = [], []
    for f in files:
        source = Path(f)
        try:
            images.append((source, read_image(source, max_pixels=max_pixels)))
        except ImageReadError as e:
            outcomes.append(Outcome(source.name, error=refusal(e)))
            log.info("refused %s: %s", source.name, refusal(e))
    works = [work_megapixels(restorer, im.height, im.width) for _, im in images]
    total_work, done_work = sum(works) or 1.0, 0.0
    steps = restorer.steps or default_steps(restorer.model)
    for k, ((source, image), work) in enumerate(zip(images, works), 1):
        started = time.perf_counter()
        tiles = restorer.num_tiles(image.height, image.width)
        where = f"{source.name} ({k} of {len(images)})" if len(images) > 1 else source.name
        tiles_done = [0]

        def tell(fraction: float, detail: str, before=done_work, work=work) -> None:
            if progress is not None:
                progress((before + fraction * work) / total_work, detail)

        def on_tile(n: int, where=where, tiles=tiles, tell=tell, tiles_done=tiles_done) -> None:
            tiles_done[0] += n
            if tiles > 1:
                tell(tiles_done[0] / tiles, f"{where} · tile {min(tiles, tiles_done[0] + 1)} of {tiles}")

        def on_step(done: int, total: int, where=where, tiles=tiles, tell=tell) -> None:
            per_tile = max(1, total // tiles)
            tile, step = (done - 1) // per_tile + 1, (done - 1) % per_tile + 1
            tell(done / total, where + (f" · tile {tile} of {tiles}" if tiles > 1 else "")
                 + f" · step {step} of {per_tile} done")

        tell(0.0, where + (f" · tile 1 of {tiles}" if tiles > 1 else "") + (f" · step 1 of {steps}" if steps else ""))
        labels = restorer.detect(image.rgb)
        result = restorer.restore(image.rgb, progress=on_tile, step_progress=on_step, should_stop=should_stop)
        seconds = time.perf_counter() - started
        if speed is not None and steps:
            speed.add(seconds, work * steps, network_shape(restorer, image.height, image.width))
        done_work += work
        out_dir.mkdir(parents=True, exist_ok=True)
        output = out_dir / output_name(source)
        notes = image.notes + write_image(output, result, image)
        channels = "gray" if image.grayscale else "RGB"
        channels += "+alpha" if image.alpha is not None else ""
        outcomes.append(Outcome(source.name, output, _preview(image.rgb), _preview(result),
                                f"{image.width}×{image.height}, {channels}, {image.bit_depth}-bit",
                                ", ".join(labels) if labels is not None else "", seconds, "; ".join(notes)))
    order = {Path(f).name: i for i, f in enumerate(files)}
    return sorted(outcomes, key=lambda o: order.get(o.name, 0))


def estimate_markdown(loaded: LoadedModel | None, restorer, sizes: list[tuple[int, int]], waiting: int = 0) -> str:
    """What Restore will cost, said before it is pressed: images, megapixels, tiles, and the time from the measured
    speed of the model and engine in use (an estimate; other visitors' jobs may come first)."""
    if not sizes:
        return "Upload images to see how long they will take."
    pixels = sum(w * h for w, h in sizes) / 1e6
    tiles = sum(restorer.num_tiles(h, w) for w, h in sizes)
    what = (f"{len(sizes)} image{'s' * (len(sizes) > 1)}, {pixels:.2f} megapixels"
            + (f" in {tiles} tiles of {restorer.tile} px" if tiles > len(sizes) else ""))
    queue = f" {waiting} job{'s' * (waiting > 1)} of other visitors ahead now." if waiting else ""
    seconds = job_estimate(loaded, restorer, sizes)
    if seconds is None:
        return f"{what}: time not known yet (the first restoration with this model measures its speed).{queue}"
    steps = restorer.steps or loaded.steps
    new_shapes = len({network_shape(restorer, h, w) for w, h in sizes} - set(loaded.speed.shapes))
    setup = (f", + {duration(loaded.speed.setup)} to prepare the engine for each new image size"
             if new_shapes and loaded.speed.setup >= 1 else "")
    return (f"**{what}: about {duration(seconds)}** (an estimate: {loaded.speed.rate * steps:.1f} s per megapixel "
            f"measured for {loaded.name}, engine {loaded.engine}, {steps} steps"
            f"{', tiles overlapping' if tiles > len(sizes) else ''}{setup}).{queue}")


def job_estimate(loaded: LoadedModel | None, restorer, sizes: list[tuple[int, int]]) -> float | None:
    """Seconds to restore images of ``sizes`` (width, height) with ``restorer``, from the model's measured speed."""
    steps = restorer.steps or (loaded.steps if loaded is not None else None)
    if loaded is None or not steps or not sizes:
        return None
    work = sum(work_megapixels(restorer, h, w) for w, h in sizes) * steps
    return loaded.speed.estimate(work, [network_shape(restorer, h, w) for w, h in sizes])


def summary_markdown(outcomes: list[Outcome], detects: bool, elapsed: float, model_info: str) -> str:
    """The results table shown under the slider (and the refused files with their reasons)."""
    done = [o for o in outcomes if o.error == ""]
    failed = [o for o in outcomes if o.error]
    lines = [f"**Restored {len(done)} of {len(outcomes)} image(s) in {elapsed:.2f} s** — {model_info}", ""]
    if done:
        notes = any(o.notes for o in done)
        head = ["image", "size", *(["detected degradation"] if detects else []), "time", *(["notes"] if notes else [])]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for o in done:
            cells = [o.name, o.size, *([o.degradation or "none"] if detects else []), f"{o.seconds:.2f} s",
                     *([o.notes] if notes else [])]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if failed:
        lines += ["", "**Refused:**", ""] + [f"- `{o.name}`: {o.error}" for o in failed]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- the page
CSS = """
#restore-row {flex-wrap: nowrap; gap: 8px}
#status .status {padding: 4px 0; font-size: 0.95em}
#status progress {width: 100%; height: 14px; display: block; margin-bottom: 4px}
#summary table {display: block; overflow-x: auto; max-width: 100%; width: max-content; border: none}
#summary th, #summary td {word-break: normal; overflow-wrap: normal; hyphens: none; padding: 4px 8px}
#summary th {white-space: nowrap}
#model-info, #estimate {font-size: 0.92em}
"""
SCROLL_TO_RESULTS = """() => setTimeout(() => { const e = document.getElementById('results'); if (!e) return;
  const r = e.getBoundingClientRect();
  if (r.top < 0 || r.top > window.innerHeight * 0.6) e.scrollIntoView({block: 'start'}); }, 300)"""
SCROLL_TO_STATUS = """() => { const e = document.getElementById('status'); if (!e) return;
  const r = e.getBoundingClientRect();
  if (r.bottom > window.innerHeight) e.scrollIntoView({behavior: 'smooth', block: 'center'}); }"""
POLL_SECONDS = 0.5  # how often a waiting or running job's line is refreshed
HELP = {
    "steps": "0 = the model's own number. Each step is one network pass per tile: the time grows with it.",
    "seed": "Fixes the sampler's noise: the same seed gives the same image (and the same bytes as "
            "python -m src.restore --seed).",
    "tile": "Images with a side above this are restored tile by tile (bounded memory). 0 = in one pass.",
    "overlap": "Pixels neighbouring tiles share, blended so that no seam shows.",
}


def build_app(cache: ModelCache, work_dir: Path, max_pixels: int | None = None, tile_default: int = 512,
              overlap_default: int | None = None, queue: JobQueue | None = None):
    """The Gradio Blocks of the app (not launched); jobs go through ``queue`` (a new :class:`JobQueue` if None)."""
    import gradio as gr

    from src.inference import DEFAULT_OVERLAP, Restorer
    from src.utils.images import ImageReadError, probe_image

    overlap_default = DEFAULT_OVERLAP if overlap_default is None else overlap_default
    slider_cls = getattr(gr, "ImageSlider", None)
    queue = queue if queue is not None else JobQueue()
    runs = {"n": 0}
    labels = [(checkpoint_label(p), p) for p in cache.paths]

    def settings_restorer(ckpt, steps, seed, tile, overlap):
        loaded = cache.loaded(ckpt)
        model = loaded.model if loaded is not None else None
        problems = settings_problems(steps, seed, tile, overlap)
        if problems or model is None:
            return loaded, None, problems
        return loaded, Restorer(model, loaded.device, loaded.precision, int(steps) or None, int(seed), int(tile),
                                int(overlap), 1), []

    def estimate(files, ckpt, steps, seed, tile, overlap):
        loaded, restorer, problems = settings_restorer(ckpt, steps, seed, tile, overlap)
        if problems:
            return "**Settings:** " + "; ".join(problems)
        if restorer is None:
            return "Upload images; the first restoration with this checkpoint loads it and measures its speed."
        sizes = image_sizes(files or [])
        return estimate_markdown(loaded, restorer, sizes, len(queue))

    def image_sizes(files):
        sizes = []
        for f in files:
            try:
                info = probe_image(f, max_pixels=max_pixels)
                sizes.append((info.width, info.height))
            except ImageReadError:
                pass  # refused at upload, or reported by Restore
        return sizes

    def uploaded(files):
        files = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files or []]
        accepted, refused = check_uploads(files, max_pixels)
        if not refused:
            return gr.skip(), "", ""
        names = ", ".join(name for name, _ in refused)
        gr.Warning(f"Refused (not a readable image): {names}. The reasons are in the results panel.")
        return (accepted, refused_markdown(refused),
                f"<div class='status failed'>Refused at upload: {html.escape(names)} (not readable images; the "
                "reasons are in the results panel).</div>")

    def restore(files, ckpt, steps, seed, tile, overlap, request: gr.Request):
        session = getattr(request, "session_hash", None) or "anonymous"
        idle = {button: gr.update(interactive=True), stop_button: gr.update(interactive=False)}
        files = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files or []]
        problems = settings_problems(steps, seed, tile, overlap)
        if not files:
            problems = ["Upload one or more images first."] + problems
        if problems:
            log.info("refused a restore for %s: %s", session[:8], "; ".join(problems))
            yield {status: "<div class='status failed'>Nothing restored: see the results panel.</div>",
                   summary: "**Nothing restored:**\n\n" + "\n".join(f"- {p}" for p in problems), **idle}
            return
        loaded = cache.loaded(ckpt)
        runs["n"] += 1
        out_dir = work_dir / "results" / f"run{runs['n']:04d}"
        guess = None
        if loaded is not None:
            restorer = Restorer(loaded.model, loaded.device, loaded.precision, int(steps) or None, int(seed),
                                int(tile), int(overlap), 1)
            guess = job_estimate(loaded, restorer, image_sizes(files))

        def run(job: Job):
            model = cache.get(ckpt)
            restorer = Restorer(model.model, model.device, model.precision, int(steps) or None, int(seed),
                                int(tile), int(overlap), 1)
            started = time.perf_counter()
            outcomes = restore_files(files, restorer, out_dir, max_pixels, job.report, job.should_stop, model.speed)
            return outcomes, restorer.detects, time.perf_counter() - started, model.info

        try:
            job = queue.submit(session, run, guess)
        except Busy as e:
            log.info("refused a restore for %s: %s", session[:8], e)
            yield {status: f"<div class='status failed'>Not started: {html.escape(str(e))}.</div>"}
            return
        log.info("job of %s queued: %d image(s), %d job(s) ahead", session[:8], len(files), queue.position(job))
        yield {button: gr.update(interactive=False), stop_button: gr.update(interactive=True),
               summary: "", status: status_html(job, queue.position(job), queue.wait_ahead(job))}
        try:
            while not job.wait(POLL_SECONDS):
                yield {status: status_html(job, max(0, queue.position(job)), queue.wait_ahead(job))}
        finally:
            if not job.wait(0):  # the page went away (Gradio closed this generator): end the job too
                queue.cancel(session, "tab closed")
        if job.state == "stopped":
            yield {status: status_html(job), **idle}
            return
        if job.state == "failed":
            yield {status: status_html(job), summary: f"**Failed:** {job.error}", **idle}
            return
        outcomes, detects, elapsed, info = job.result
        log.info("job of %s done: %d image(s) in %.1f s", session[:8], len(outcomes), elapsed)
        restored = [o for o in outcomes if o.output is not None]
        text = summary_markdown(outcomes, detects, elapsed, info)
        if not restored:
            yield {status: "<div class='status failed'>No image could be restored: see the results panel.</div>",
                   summary: text, **idle}
            return
        previews = {o.name: (o.before, o.after) for o in restored}
        first = restored[0].name
        yield {status: status_html(job), slider: previews[first], downloads: [str(o.output) for o in restored],
               summary: text, pick: gr.update(choices=list(previews), value=first, visible=len(previews) > 1),
               previews_state: previews, **idle}

    def stop(request: gr.Request):
        session = getattr(request, "session_hash", None) or "anonymous"
        job = queue.cancel(session, "Stop pressed")
        if job is not None:
            log.info("Stop pressed by %s", session[:8])

    def closed(request: gr.Request):
        session = getattr(request, "session_hash", None) or "anonymous"
        if queue.cancel(session, "tab closed") is not None:
            log.info("tab of %s closed: its job is cancelled", session[:8])

    for fn in (restore, stop, closed):  # Gradio passes the request to parameters annotated with gr.Request
        fn.__annotations__["request"] = gr.Request

    def show(name, previews):
        return previews.get(name) if previews and name else None

    def describe(ckpt):
        try:
            return cache.get(ckpt).describe()
        except Exception as e:
            log.info("cannot load %s: %s: %s", ckpt, type(e).__name__, e)
            return f"**Cannot load {checkpoint_label(ckpt)}:** {type(e).__name__}: {e}"

    with gr.Blocks(title="uir-suite: restore images") as app:
        gr.Markdown("## uir-suite · image restoration\nUpload images, press **Restore**, compare with the slider "
                    "and download the results (full size, same format and bit depth).", elem_id="intro")
        previews_state = gr.State({})
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                files = gr.File(label="Images (PNG, JPEG, TIFF, WebP, …; 16-bit stays 16-bit)",
                                file_count="multiple", type="filepath", elem_id="uploads", height=150)
                estimate_text = gr.Markdown("Upload images to see how long they will take.", elem_id="estimate")
                with gr.Row(elem_id="restore-row"):
                    button = gr.Button("Restore", variant="primary", elem_id="restore", scale=3)
                    stop_button = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False, scale=1)
                status = gr.HTML("", elem_id="status")
                model_info = gr.Markdown(describe(cache.paths[0]), elem_id="model-info")
                with gr.Accordion("Settings", open=True, elem_id="settings"):
                    ckpt = gr.Dropdown(labels, value=cache.paths[0], label="Checkpoint", elem_id="ckpt",
                                       visible=len(labels) > 1)
                    with gr.Row():
                        steps = gr.Number(0, label="Sampling steps", info=HELP["steps"], precision=0,
                                          elem_id="steps")
                        seed = gr.Number(0, label="Seed", info=HELP["seed"], precision=0, elem_id="seed")
                    with gr.Row():
                        tile = gr.Number(tile_default, label="Tile size", info=HELP["tile"], precision=0,
                                         elem_id="tile")
                        overlap = gr.Number(overlap_default, label="Tile overlap", info=HELP["overlap"],
                                            precision=0, elem_id="overlap")
            with gr.Column(scale=2, min_width=360, elem_id="results"):
                if slider_cls is not None:
                    slider = slider_cls(label="before | after", type="numpy", format="png", interactive=False,
                                        elem_id="slider", buttons=["fullscreen"])
                else:  # older Gradio without ImageSlider: the two images side by side
                    slider = gr.Gallery(label="before | after", columns=2, elem_id="slider")
                pick = gr.Dropdown([], label="Show", visible=False, elem_id="pick")
                summary = gr.Markdown(elem_id="summary")
                downloads = gr.File(label="Restored files (full size, input's format and bit depth)",
                                    file_count="multiple", interactive=False, elem_id="downloads")
        settings = [files, ckpt, steps, seed, tile, overlap]
        files.upload(uploaded, files, [files, summary, status], concurrency_limit=4, show_progress="minimal")
        for component in settings:
            component.change(estimate, settings, estimate_text, concurrency_limit=None, show_progress="hidden")
        ckpt.change(describe, ckpt, model_info)
        job_event = button.click(restore, settings, [status, slider, downloads, summary, pick, previews_state,
                                                     button, stop_button],
                                 concurrency_limit=None, show_progress="hidden")
        button.click(None, js=SCROLL_TO_STATUS)
        job_event.then(None, js=SCROLL_TO_RESULTS)
        stop_button.click(stop, None, None, queue=False)
        pick.change(show, [pick, previews_state], slider)
        app.unload(closed)
    return app


# ---------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    from src.inference import DEFAULT_OVERLAP
    from src.utils.images import DEFAULT_MAX_PIXELS

    p = argparse.ArgumentParser(prog="python -m src.app",
                                description="A web app to restore images with uir-suite checkpoints (Gradio).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", action="append", default=[], metavar="PATH",
                   help="a checkpoint to offer (repeat for several; the first is selected)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes the app to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (0: a free one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="auto", help="auto, 32, bf16 or 16")
    p.add_argument("--engine", default="auto", help="DiffUIR inference engine, as src.restore's --engine")
    p.add_argument("--tile", type=int, default=512, help="default tile size shown in the page")
    p.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP, help="default tile overlap shown in the page")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (0: no limit)")
    p.add_argument("--max-file-size", default="200mb", help="largest upload Gradio accepts")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.ckpt:  # the shipped weights, as src.restore without --ckpt
        from src.inference import DEFAULT_WEIGHTS

        if not DEFAULT_WEIGHTS.exists():
            print("error: no checkpoint: pass --ckpt PATH (a checkpoint written by `python -m src.train`, e.g. "
                  "logs/diffuir_t_demo/runs/<time>/checkpoints/last.ckpt; repeat --ckpt to offer several); the "
                  f"shipped weights are missing from {DEFAULT_WEIGHTS}", file=sys.stderr)
            return EXIT_USAGE
        args.ckpt = [str(DEFAULT_WEIGHTS)]
    missing = [c for c in args.ckpt if not Path(c).exists()]
    if missing:
        print(f"error: checkpoint not found: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    from src.inference import PRECISIONS

    if args.precision != "auto" and args.precision not in PRECISIONS:
        print(f"error: --precision {args.precision}: expected auto or one of {', '.join(PRECISIONS)}",
              file=sys.stderr)
        return EXIT_USAGE

    def stop(signum, frame):  # SIGTERM ends the server like Ctrl-C, so that the folder below is removed
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop), tempfile.tempdir, {
        k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED", "TMPDIR",
                                       "GRADIO_HEARTBEAT_INTERVAL")}
    work_dir = Path(tempfile.mkdtemp(prefix="uir-app-"))
    # every file Gradio or Python writes (uploads, cached outputs, tempfiles) goes under work_dir
    os.environ.update(GRADIO_TEMP_DIR=str(work_dir / "gradio"), TMPDIR=str(work_dir),
                      GRADIO_ANALYTICS_ENABLED=os.environ.get("GRADIO_ANALYTICS_ENABLED", "False"),
                      # a closed tab is noticed within 2 s (Gradio's default: 15 s), so its job ends soon
                      GRADIO_HEARTBEAT_INTERVAL=os.environ.get("GRADIO_HEARTBEAT_INTERVAL", "2"))
    tempfile.tempdir = str(work_dir)
    jobs = None
    handler = logging.StreamHandler(sys.stderr)  # one line per refusal, job and stop: no tracebacks
    handler.setFormatter(logging.Formatter("%(asctime)s src.app: %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        try:
            import gradio  # noqa: F401  (imported only now: it reads GRADIO_TEMP_DIR)
        except ImportError:
            print(f"error: the web app needs Gradio, an optional extra: {INSTALL_HINT}", file=sys.stderr)
            return EXIT_USAGE
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        cache = ModelCache(args.ckpt, args.device, args.precision, args.engine, args.tile or CALIBRATION_SIDE)
        try:
            first = cache.get(args.ckpt[0])  # fail now, not in the page, on a bad first checkpoint
        except Exception as e:
            print(f"error: cannot load a model from {args.ckpt[0]}: {type(e).__name__}: {e}", file=sys.stderr)
            return EXIT_USAGE
        jobs = JobQueue()
        app = build_app(cache, work_dir, args.max_pixels or None, args.tile, args.tile_overlap, jobs)
        port = args.port or _free_port(args.host)
        print(f"model: {first.info} ({args.ckpt[0]})\nspeed: {first.speed.rate * (first.steps or 1):.2f} s per "
              f"megapixel at {first.steps or 1} step(s) (measured on a {cache.calibration_side}² image)\n"
              f"working folder (removed on exit): {work_dir}", flush=True)
        app.queue(default_concurrency_limit=1).launch(
            server_name=args.host, server_port=port, inbrowser=False, share=False, show_error=True,
            allowed_paths=[str(work_dir)], max_file_size=args.max_file_size, ssr_mode=False, css=CSS)
    except KeyboardInterrupt:
        pass
    finally:
        if jobs is not None:
            jobs.close()
        log.removeHandler(handler)
        shutil.rmtree(work_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous[0])
        tempfile.tempdir = previous[1]
        for key, value in previous[2].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return 0


if __name__ == "__main__":
    sys.exit(main())
