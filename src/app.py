"""A restoration web app: ``python -m src.app --ckpt PATH [--ckpt PATH ...]`` (``make app``), then open the URL.

Upload one or more images (any format :mod:`src.utils.images` reads: 8/16-bit PNG and TIFF, JPEG, WebP, gray,
RGBA, ...), pick a checkpoint (DiffUIR of any size, the Diff-Restorer pipeline, ...: whatever
:func:`src.utils.checkpoints.load_restoration_model` rebuilds: a
``.ckpt`` or an ``src.export`` folder), the sampling steps, the seed and the tiling,
and press *Restore*: a before/after slider, the degradation the model detects (models with
``detect_degradation``), the time taken, and the restored files to download at full size and bit depth.

One code path with ``python -m src.restore``: images are read and written with :func:`~src.utils.images.read_image`
/ :func:`~src.utils.images.write_image` and restored by the same :class:`src.restore.Restorer` (padding, tiling,
one seeded noise field), so the same seed gives the same bytes as the command line. Bad files are refused with the
same :class:`~src.utils.images.ImageReadError` messages. Large images are restored tile by tile, and the tile loop
feeds the page's progress bar.

Gradio is an optional extra (``pip install -e '.[app]'``). The server binds to 127.0.0.1 unless ``--host`` says
otherwise, and everything it writes (uploads, previews, results) stays in one temporary folder of its own
(``GRADIO_TEMP_DIR``), removed when it stops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXIT_USAGE = 2
PREVIEW_SIDE = 2048  # the slider shows images downscaled to this side at most; downloads are full size
INSTALL_HINT = "pip install -e '.[app]'"


# ---------------------------------------------------------------------------------------------------------- models
@dataclass
class LoadedModel:
    model: object
    device: object
    precision: str
    info: str           # one line for the page


class ModelCache:
    """Checkpoints by path, each loaded once (on first use) with the suite's one loader."""

    def __init__(self, paths: list[str], device: str = "auto", precision: str = "auto", engine: str = "auto"):
        self.paths, self.device_name, self.precision_name = list(paths), device, precision
        self.engine_name = engine
        self._loaded: dict[str, LoadedModel] = {}

    def get(self, path: str) -> LoadedModel:
        if path not in self.paths:
            raise ValueError(f"unknown checkpoint {path!r}: the app was started with {self.paths}")
        if path not in self._loaded:
            from src.inference import load_restorer, pick_device, use_engine
            from src.utils.checkpoints import parameter_count

            device = pick_device(self.device_name)
            model, restorer = load_restorer(path, device, self.precision_name)  # as src.restore loads it
            precision = restorer.precision
            engine = use_engine(model, self.engine_name, device, precision)  # auto: src.restore's default too
            target = (getattr(model, "model_config", None) or {}).get("_target_", type(model).__name__)
            steps = default_steps(model)
            info = (f"{type(model).__name__} ({target}, {parameter_count(model):,} parameters); "
                    f"default steps: {steps or '?'}; device {device}, precision {precision}, engine {engine}"
                    + ("; detects the degradation" if callable(getattr(model, "detect_degradation", None)) else ""))
            self._loaded[path] = LoadedModel(model, device, precision, info)
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


def restore_files(files: list[str], restorer, out_dir: Path, max_pixels: int | None, progress=None) -> list[Outcome]:
    """Read, restore and write each upload with the CLI's functions; ``progress(done, total, desc)`` counts tiles.

    An unreadable file gets its :class:`~src.utils.images.ImageReadError` reason and the others go on.
    """
    from src.utils.images import ImageReadError, read_image, write_image

    images, outcomes = [], []
    for f in files:
        source = Path(f)
        try:
            images.append((source, read_image(source, max_pixels=max_pixels)))
        except ImageReadError as e:
            outcomes.append(Outcome(source.name, error=e.reason))
            images.append((source, None))
    total = sum(restorer.num_tiles(im.height, im.width) for _, im in images if im is not None)
    done = 0
    for source, image in images:
        if image is None:
            continue
        started = time.perf_counter()

        def tick(n: int, name=source.name) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total, name)

        labels = restorer.detect(image.rgb)
        result = restorer.restore(image.rgb, progress=tick)
        out_dir.mkdir(parents=True, exist_ok=True)
        output = out_dir / output_name(source)
        notes = image.notes + write_image(output, result, image)
        channels = "gray" if image.grayscale else "RGB"
        channels += "+alpha" if image.alpha is not None else ""
        outcomes.append(Outcome(source.name, output, _preview(image.rgb), _preview(result),
                                f"{image.width}×{image.height}, {channels}, {image.bit_depth}-bit",
                                ", ".join(labels) if labels is not None else "", time.perf_counter() - started,
                                "; ".join(notes)))
    order = {Path(f).name: i for i, f in enumerate(files)}
    return sorted(outcomes, key=lambda o: order.get(o.name, 0))


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
def build_app(cache: ModelCache, work_dir: Path, max_pixels: int | None = None, tile_default: int = 512,
              overlap_default: int = 64):
    """The Gradio Blocks of the app (not launched)."""
    import gradio as gr

    from src.inference import Restorer

    slider_cls = getattr(gr, "ImageSlider", None)
    runs = {"n": 0}

    def restore(files, ckpt, steps, seed, tile, overlap, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        if not files:
            raise gr.Error("Upload one or more images first.")
        files = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
        try:
            loaded = cache.get(ckpt)
            restorer = Restorer(loaded.model, loaded.device, loaded.precision, int(steps) or None, int(seed),
                                int(tile), int(overlap), 1)
        except Exception as e:  # a bad checkpoint or setting: say which, keep the app running
            raise gr.Error(f"{type(e).__name__}: {e}") from None
        runs["n"] += 1
        out_dir = work_dir / "results" / f"run{runs['n']:04d}"
        started = time.perf_counter()
        progress(0, desc="reading")

        def report(done, total, name):
            progress((done, total), desc=f"restoring {name}", unit="tiles")

        outcomes = restore_files(files, restorer, out_dir, max_pixels, report)
        restored = [o for o in outcomes if o.output is not None]
        text = summary_markdown(outcomes, restorer.detects, time.perf_counter() - started, loaded.info)
        if not restored:
            raise gr.Error("No image could be restored:\n" + "\n".join(f"{o.name}: {o.error}" for o in outcomes),
                           duration=None)
        previews = {o.name: (o.before, o.after) for o in restored}
        first = restored[0].name
        return (previews[first], [str(o.output) for o in restored], text,
                gr.update(choices=list(previews), value=first, visible=len(previews) > 1), previews)

    def show(name, previews):
        return previews.get(name) if previews and name else None

    def describe(ckpt):
        try:
            return cache.get(ckpt).info
        except Exception as e:
            return f"**cannot load {ckpt}**: {type(e).__name__}: {e}"

    with gr.Blocks(title="uir-suite: restore images") as app:
        gr.Markdown("# uir-suite · image restoration\nUpload images (PNG, JPEG, TIFF, WebP, …; 16-bit stays "
                    "16-bit), choose a checkpoint and press **Restore**. Drag the slider to compare; download the "
                    "full-size results below.")
        previews = gr.State({})
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                files = gr.File(label="Images", file_count="multiple", type="filepath", elem_id="uploads")
                ckpt = gr.Dropdown(cache.paths, value=cache.paths[0], label="Checkpoint", elem_id="ckpt")
                model_info = gr.Markdown(describe(cache.paths[0]), elem_id="model-info")
                with gr.Row():
                    steps = gr.Number(0, label="Sampling steps (0: the model's)", precision=0, minimum=0,
                                      elem_id="steps")
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="seed")
                with gr.Row():
                    tile = gr.Number(tile_default, label="Tile size (0: never tile)", precision=0, minimum=0,
                                     elem_id="tile")
                    overlap = gr.Number(overlap_default, label="Tile overlap", precision=0, minimum=0,
                                        elem_id="overlap")
                button = gr.Button("Restore", variant="primary", elem_id="restore")
            with gr.Column(scale=2, min_width=420):
                if slider_cls is not None:
                    slider = slider_cls(label="before | after", type="numpy", format="png", interactive=False,
                                        elem_id="slider", buttons=["fullscreen"])
                else:  # older Gradio without ImageSlider: the two images side by side
                    slider = gr.Gallery(label="before | after", columns=2, elem_id="slider")
                pick = gr.Dropdown([], label="Show", visible=False, elem_id="pick")
                summary = gr.Markdown(elem_id="summary")
                downloads = gr.File(label="Restored files (full size, input's format and bit depth)",
                                    file_count="multiple", interactive=False, elem_id="downloads")
        ckpt.change(describe, ckpt, model_info)
        button.click(restore, [files, ckpt, steps, seed, tile, overlap],
                     [slider, downloads, summary, pick, previews], concurrency_limit=1)
        pick.change(show, [pick, previews], slider)
    return app


# ---------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--tile-overlap", type=int, default=64, help="default tile overlap shown in the page")
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
        k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED", "TMPDIR")}
    work_dir = Path(tempfile.mkdtemp(prefix="uir-app-"))
    # every file Gradio or Python writes (uploads, cached outputs, tempfiles) goes under work_dir
    os.environ.update(GRADIO_TEMP_DIR=str(work_dir / "gradio"), TMPDIR=str(work_dir),
                      GRADIO_ANALYTICS_ENABLED=os.environ.get("GRADIO_ANALYTICS_ENABLED", "False"))
    tempfile.tempdir = str(work_dir)
    try:
        try:
            import gradio  # noqa: F401  (imported only now: it reads GRADIO_TEMP_DIR)
        except ImportError:
            print(f"error: the web app needs Gradio, an optional extra: {INSTALL_HINT}", file=sys.stderr)
            return EXIT_USAGE
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        cache = ModelCache(args.ckpt, args.device, args.precision, args.engine)
        try:
            info = cache.get(args.ckpt[0]).info  # fail now, not in the page, on a bad first checkpoint
        except Exception as e:
            print(f"error: cannot load a model from {args.ckpt[0]}: {type(e).__name__}: {e}", file=sys.stderr)
            return EXIT_USAGE
        app = build_app(cache, work_dir, args.max_pixels or None, args.tile, args.tile_overlap)
        port = args.port or _free_port(args.host)
        print(f"model: {info}\nworking folder (removed on exit): {work_dir}", flush=True)
        app.queue(default_concurrency_limit=1).launch(
            server_name=args.host, server_port=port, inbrowser=False, share=False, show_error=True,
            allowed_paths=[str(work_dir)], max_file_size=args.max_file_size, ssr_mode=False)
    except KeyboardInterrupt:
        pass
    finally:
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
