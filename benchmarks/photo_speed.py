"""Whole photos through ``python -m src.restore``, end to end: ``python -m benchmarks.photo_speed``.

What a user feels is a whole photo: reading it, padding, tiling, the 3-step sampler on every tile, the overlap
blend and writing the result. For each model (DiffUIR-T: the shipped weights; other sizes: random weights of that
size saved as an export folder, same compute as trained ones) and each photo size (1, 4 and 12 megapixels, 3:2 and
4:3 like phone photos), this script synthesises a noisy JPEG from a built-in photo (scikit-image's ``astronaut``,
mirrored to the size, Gaussian noise σ = 15/255; seeded) and times ``python -m src.restore`` on it **in a child
process** with ``--threads`` threads, so that the wall time includes the interpreter start, the model load and
the engine compilation, and the peak memory is the child's own (``ru_maxrss`` from ``os.wait4``).

Reported per run: wall seconds (end to end) and seconds per megapixel; the restore time ``src.restore`` prints
(reading, tiling, sampling, blending and writing, without the model load); the tiles and their shape (one shape
per photo: the engine compiles it once); the multiply-adds the sampler computed (tiles × steps × the network's
MACs per pixel, counted by :func:`src.diffuir.complexity.forward_macs`, and the overlap's share of them) and the
achieved GMAC/s over the restore time; the peak resident memory; the engine and precision ``src.restore`` chose
(its first output line). Writes ``OUT.csv`` and ``OUT.md`` (default ``experiments/bench/photo_speed``).

``--cache``: ``cold`` (default) runs every child as a first run ever: the engine cache off (``UIR_CACHE_DIR=off``:
ONNX export, precision check and compilation all paid) and no Python bytecode (every module compiled from source:
``PYTHONPYCACHEPREFIX`` an empty folder, ``PYTHONDONTWRITEBYTECODE=1``); ``installed``: the engine cache off, the
bytecode that ``make setup`` / ``make demo`` leave (``python -m src.utils.bytecode``, run here first), a user's first
photo after installing; ``warm`` gives the children one engine cache folder and one bytecode folder and runs each
command once untimed first, as a user's second run (:mod:`src.diffuir.engine_cache`). Several: each row in each
state, alternated (order alternated too).

    python -m benchmarks.photo_speed                              # T and L at 1, 4, 12 MP, 2 threads, CPU
    python -m benchmarks.photo_speed --sizes T --mp 12 --precision 32 bf16 auto
    python -m benchmarks.photo_speed --sizes T --mp 1 --cache cold installed warm --rounds 3   # what caches save
    python -m benchmarks.photo_speed --device cuda                # what benchmarks/gpu.sh runs on a GPU
    python -m benchmarks.photo_speed --smoke                      # tiny end-to-end check (the tests run it)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import worktree
from src.utils.csv_cells import write_rows

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "experiments" / "bench" / "photo_speed"
SHIPPED = ROOT / "src" / "pretrained" / "diffuir_t_photos"
PHOTO_SHAPES = {1: (816, 1224), 4: (1632, 2448), 12: (3000, 4000)}  # megapixels → (rows, columns)
GOAL_12MP_S, GOAL_PEAK_GB = 90.0, 4.0  # issue 18: shipped DiffUIR-T, 12 MP on 2 cores
COLUMNS = ("run", "cpu", "device", "threads", "model", "weights", "round", "mp", "height", "width", "precision_flag",
           "cache", "code",
           "engine_line", "tile", "overlap", "tile_batch", "tiles", "tile_shape", "wall_s", "s_per_mp", "restore_s",
           "load_s", "gmacs", "overlap_share", "gmac_per_s", "peak_rss_gb", "load_before", "load_after")


def synthesise_photo(height: int, width: int, path: Path, seed: int = 0) -> Path:
    """A noisy photo of ``height``×``width``: the built-in ``astronaut`` mirrored to the size (no resampling, so it
    keeps a photo's detail everywhere), Gaussian noise σ = 15/255, written as a JPEG of quality 95."""
    from PIL import Image

    from src.data.builtin import load_builtin_image

    base = load_builtin_image("astronaut")
    tile = np.concatenate([base, base[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    reps = (math.ceil(height / tile.shape[0]), math.ceil(width / tile.shape[1]), 1)
    img = np.tile(tile, reps)[:height, :width]
    img = img + np.random.default_rng(seed).normal(0, 15 / 255, img.shape).astype(np.float32)
    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path, quality=95)
    return path


def random_weights(size: str, folder: Path, dim: int | None = None) -> Path:
    """An export folder (``src.export`` format) of DiffUIR-``size`` with random weights (seed 0) and the shipped
    model's sampler settings; ``dim`` overrides the width (the smoke test's tiny network)."""
    from src.diffuir.unet import SIZES
    from src.export import export_safetensors
    from src.utils.checkpoints import instantiate_model_config, read_export, without_weight_init

    _, config, _ = read_export(SHIPPED)
    config = {**without_weight_init(config), "net": {**config["net"], "dim": dim or SIZES[size]["dim"],
                                "dim_mults": list(SIZES[size]["dim_mults"])}}
    torch.manual_seed(0)
    model = instantiate_model_config(config, "photo_speed random weights")
    model.model_config = config
    export_safetensors(model, SHIPPED / "config.yaml", folder)
    return folder


def macs_per_pixel(ckpt: Path) -> tuple[float, int]:
    """(multiply-adds per pixel of one network forward, the network's size multiple) of the model in ``ckpt``:
    counted at 64² (every operation of the U-Net is linear in the pixel count but the time MLP)."""
    from src.diffuir.complexity import forward_macs
    from src.utils.checkpoints import load_restoration_model

    model = load_restoration_model(ckpt)
    side = 4 * model.eval_net.pad_multiple
    return forward_macs(model.eval_net, side, side) / side**2, model.eval_net.pad_multiple


def tile_plan(height: int, width: int, multiple: int, tile: int, overlap: int) -> tuple[int, tuple[int, int]]:
    """(number of tiles, tile shape) ``src.restore`` uses for a photo of this size (as :class:`Restorer`)."""
    from src.inference import Restorer

    return Restorer.plan(height, width, multiple, tile, overlap)


def run_child(args: list[str], threads: int, timeout: float | None = None,
              cache: str | Path = "off", tree: Path = ROOT, bytecode: Path | None = None,
              write_bytecode: bool = True) -> tuple[float, float, str, int]:
    """(wall s, peak RSS GB, stdout + stderr, exit code) of ``python -m src.restore ARGS`` in a child process with
    the engine cache folder ``cache`` (``off``: none), run from the checkout ``tree`` (``--before``: a worktree);
    ``bytecode``: the child's ``PYTHONPYCACHEPREFIX``, read and written, or with ``write_bytecode`` False only read
    (None: the environment's settings, and the bytecode installed beside the sources)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1", "UIR_CACHE_DIR": str(cache)}
    if bytecode is not None:
        env["PYTHONPYCACHEPREFIX"] = str(bytecode)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if not write_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
    if tree != ROOT:  # that checkout's src, not the one installed in editable mode
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "src.restore", *args], cwd=tree, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = None if timeout is None else start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.05)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read()
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return wall, usage.ru_maxrss * scale / 2**30, text, proc.returncode


def measure(model: str, ckpt: Path, mp: int, shape: tuple[int, int], workdir: Path, threads: int, device: str,
            precision: str, tile: int, overlap: int, tile_batch: int, macs_px: float, multiple: int,
            timeout: float | None = None, log=print, cache: str = "cold", warmed: set | None = None,
            code: str = "now", tree: Path = ROOT) -> dict:
    """One timed ``src.restore`` run on a synthesised photo of ``shape``; ``cache`` ``warm``: with the engine cache
    ``workdir/cache`` and the bytecode folder ``workdir/pyc``, filled by an untimed run of the same command first
    (once per command: ``warmed`` remembers); ``cold``: with the engine cache off and every module compiled from
    source (an empty bytecode folder, nothing written); ``installed``: the engine cache off, the installed bytecode.
    ``code``: the name of the checkout ``tree`` that runs it (``now`` or ``before@COMMIT``)."""
    height, width = shape
    photo = synthesise_photo(height, width, workdir / f"photo_{height}x{width}.jpg")
    out = workdir / f"restored_{model}_{precision}"
    args = [str(photo), "--ckpt", str(ckpt), "--out", str(out), "--overwrite", "--threads", str(threads),
            "--device", device, "--precision", precision, "--tile", str(tile), "--tile-overlap", str(overlap),
            *(["--tile-batch", str(tile_batch)] if tile_batch else []), "--no-progress"]
    folder = workdir / f"cache_{code}" if cache == "warm" else "off"
    # cold: an empty bytecode folder that stays empty (nothing compiled before, nothing written)
    bytecode = {"installed": None, "cold": workdir / "pyc_none"}.get(cache, workdir / f"pyc_{code}")
    if cache == "warm" and (warmed is None or (code, *args) not in warmed):
        _, _, text, status = run_child(args, threads, timeout, folder, tree, bytecode)
        if warmed is not None:
            warmed.add((code, *args))
        if status != 0:
            raise RuntimeError(f"src.restore ({code}) exited {status} on {photo.name} (warming the cache):\n"
                               f"{text[-2000:]}")
    load_before = os.getloadavg()[0]
    wall, peak, text, status = run_child(args, threads, timeout, folder, tree, bytecode, cache != "cold")
    if status != 0:
        raise RuntimeError(f"src.restore ({code}) exited {status} on {photo.name}:\n{text[-2000:]}")
    restored = re.search(r"failed \d+ in ([\d.]+) s.*model loaded in ([\d.]+) s", text)
    restore_s, load_s = (float(restored.group(1)), float(restored.group(2))) if restored else (math.nan, math.nan)
    tiles, (th, tw) = tile_plan(height, width, multiple, tile, overlap)
    steps = 3
    gmacs = tiles * th * tw * macs_px * steps / 1e9
    useful = math.ceil(height / multiple) * multiple * math.ceil(width / multiple) * multiple * macs_px * steps / 1e9
    row = {"model": model, "mp": mp, "height": height, "width": width, "precision_flag": precision, "cache": cache,
           "code": code,
           "engine_line": text.splitlines()[0] if text else "", "tile": tile, "overlap": overlap,
           "tile_batch": tile_batch or "engine's", "tiles": tiles, "tile_shape": f"{th}x{tw}", "wall_s": round(wall, 2),
           "s_per_mp": round(wall / (height * width / 1e6), 2), "restore_s": restore_s, "load_s": load_s,
           "gmacs": round(gmacs, 3), "overlap_share": round(1 - useful / gmacs, 3),
           "gmac_per_s": round(gmacs / restore_s, 3) if restore_s == restore_s and restore_s > 0 else "",
           "peak_rss_gb": round(peak, 2), "load_before": round(load_before, 2),
           "load_after": round(os.getloadavg()[0], 2)}
    log(f"  {model} {mp} MP ({height}×{width}), --precision {precision}, cache {cache}, code {code}: {wall:.1f} s wall "
        f"({row['s_per_mp']} s/MP), restore {restore_s} s, {row['gmac_per_s']} GMAC/s, peak {peak:.2f} GB; "
        f"{row['engine_line']}")
    return row


def engine_batching(ckpt: Path, tile_shape: tuple[int, int], threads: int, rounds: int, tiles: int | None = None,
                    log=print) -> list[dict]:
    """The 3-step sampler on ``tiles`` tiles (default: one per thread) of ``tile_shape`` through OpenVINO (fp32
    and, where the CPU has it, bf16), timed in alternation: tile by tile on one ``threads``-thread request
    (``parallel_batch=False``, batch 1) against the whole batch as parallel single-image requests on one-thread
    streams (the default). Seconds per tile, median of ``rounds``; speed-up: median of the per-round ratios."""
    import statistics

    from benchmarks.engines import alternate
    from src.diffuir import engines as E
    from src.utils.checkpoints import load_restoration_model

    tiles = tiles or threads  # one per stream
    model = load_restoration_model(ckpt)
    net, diffusion = model.eval_net, model.diffusion
    onnx = E.export_onnx(net)
    gen = torch.Generator().manual_seed(0)
    lq = torch.rand(tiles, 3, *tile_shape, generator=gen) * 2 - 1
    noise = torch.randn(lq.shape, generator=gen)
    rows = []
    for name in ("openvino", "openvino-bf16"):
        try:
            one = E.build_engine(net, name, threads=threads, model=onnx, parallel_batch=False)
        except ValueError as e:  # no bf16 on this CPU
            log(f"  {name}: {e}")
            continue
        many = E.build_engine(net, name, threads=threads, model=onnx)
        fns = {"tile by tile": lambda one=one: [diffusion.sample(one, lq[i:i + 1], noise=noise[i:i + 1])
                                                 for i in range(tiles)],
               "parallel streams": lambda many=many: diffusion.sample(many, lq, noise=noise)}
        times = alternate(fns, rounds, warmup=1)
        base = times["tile by tile"]
        for mode, ts in times.items():
            ratios = [a / b for a, b in zip(base, ts)]
            rows.append({"engine": name, "mode": mode, "tile_shape": f"{tile_shape[0]}x{tile_shape[1]}",
                         "tiles": tiles, "threads": threads, "s_per_tile": round(statistics.median(ts) / tiles, 3),
                         "speedup": round(statistics.median(ratios), 3), "min_ratio": round(min(ratios), 3),
                         "max_ratio": round(max(ratios), 3)})
            log(f"  {name} {mode}: {rows[-1]['s_per_tile']} s per {tile_shape[0]}×{tile_shape[1]} tile, "
                f"{rows[-1]['speedup']}× [{rows[-1]['min_ratio']}–{rows[-1]['max_ratio']}]")
    return rows


def overlap_agreement(ckpt: Path, overlaps: list[int], shape: tuple[int, int], tile: int, precision: str,
                      threads: int, workdir: Path, log=print) -> list[dict]:
    """What a tile overlap costs and changes: a synthesised photo of ``shape`` restored untiled and tiled with each
    overlap (default engine, ``precision``, one seed), each tiled result's PSNR and largest difference against the
    untiled one (tiles see their own GroupNorm and attention statistics, so they never match it exactly), the tiles
    and the multiply-adds relative to the photo's pixels."""
    from src.inference import load_restorer
    from src.metrics.fidelity import psnr
    from src.utils.images import read_image

    photo = synthesise_photo(*shape, workdir / f"overlap_{shape[0]}x{shape[1]}.jpg")
    img = np.asarray(read_image(photo).rgb, dtype=np.float32)
    _, untiled = load_restorer(ckpt, "cpu", precision, tile=0, engine="auto")
    ref = untiled.restore(img)
    rows = []
    for overlap in overlaps:
        _, restorer = load_restorer(ckpt, "cpu", precision, tile=tile, overlap=overlap, engine="auto")
        start = time.perf_counter()
        out = restorer.restore(img)
        seconds = time.perf_counter() - start
        tiles, (th, tw) = tile_plan(*shape, restorer.multiple, tile, overlap)
        rows.append({"overlap": overlap, "tiles": tiles, "tile_shape": f"{th}x{tw}",
                     "computed_per_pixel": round(tiles * th * tw / (shape[0] * shape[1]), 3),
                     "seconds": round(seconds, 1), "psnr_vs_untiled": round(psnr(out, ref), 2),
                     "max_diff_levels": round(float(np.abs(out - ref).max()) * 255, 1),
                     "engine_line": restorer.engine_line})
        log(f"  overlap {overlap}: {tiles} × {th}×{tw} tiles ({rows[-1]['computed_per_pixel']} pixels computed per "
            f"pixel), {seconds:.1f} s, {rows[-1]['psnr_vs_untiled']} dB from untiled, max "
            f"{rows[-1]['max_diff_levels']} levels")
    return rows


def to_markdown(rows: list[dict], facts: dict) -> str:
    intro = (f"CPU {facts['cpu']}, device {facts['device']}, {facts['threads']} threads. Each row: one child process "
             "`python -m src.restore photo.jpg` on a synthesised noisy JPEG (read, tile, sample 3 steps, blend, write; "
             "wall includes interpreter start, model load and compilation). GMAC: multiply-adds the sampler computed "
             "on all tiles (overlap: the share spent on pixels computed twice); GMAC/s over the restore time. Peak: "
             "the child's max resident memory. Load: 1-min load average before → after (2 cores: above 2 the cores "
             f"were shared). Goal (issue 18): shipped DiffUIR-T, 12 MP in ≤ {GOAL_12MP_S:g} s on 2 cores, peak ≤ "
             f"{GOAL_PEAK_GB:g} GB.")
    lines = [f"# Whole photos through `python -m src.restore` (`python -m benchmarks.photo_speed`, run "
             f"{facts['run']})", "", intro, "",
             "| model | MP | size | --precision | cache | code | engine | tiles | wall s | s / MP | restore s "
             "| model load s | GMAC | overlap | GMAC/s | peak GB | load |",
             "|---|---:|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        engine = r["engine_line"].removeprefix("engine: ").split(" (")[0]
        lines.append(f"| {r['model']} | {r['mp']} | {r['height']}×{r['width']} | {r['precision_flag']} "
                     f"| {r.get('cache', 'cold')} | {r.get('code', 'now')} | {engine} "
                     f"| {r['tiles']} × {r['tile_shape']} | {r['wall_s']} "
                     f"| {r['s_per_mp']} | {r['restore_s']} | {r['load_s']} "
                     f"| {r['gmacs']} | {r['overlap_share']:.0%} | {r['gmac_per_s']} | {r['peak_rss_gb']} "
                     f"| {r['load_before']} → {r['load_after']} |")
    notes = sorted({r["engine_line"] for r in rows})
    return "\n".join(lines + cache_summary(rows) + before_summary(rows) + [
        "", "First output lines of `src.restore`:", *(f"- `{n}`" for n in notes)]) + "\n"


def cache_summary(rows: list[dict]) -> list[str]:
    """Lines comparing the ``--cache`` states of the same command, round by round (median and range of each, the
    median of the per-round ratios of wall time cold / state); none without cold and another state."""
    import statistics

    groups: dict[tuple, dict[str, dict[int, float]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["mp"], r["precision_flag"], r.get("code", "now")), {}).setdefault(
            r.get("cache", "cold"), {})[r.get("round", 0)] = r["wall_s"]
    out = []
    for (model, mp, precision, code), by in groups.items():
        cold = by.get("cold", {})
        c = list(cold.values())
        parts = []
        for state in ("installed", "warm"):
            other = by.get(state, {})
            both = sorted(set(cold) & set(other))
            if not both:
                continue
            ratios = [cold[i] / other[i] for i in both]
            w = list(other.values())
            parts.append(f"{state} {statistics.median(w):.1f} s [{min(w):.1f}–{max(w):.1f}], "
                         f"{statistics.median(ratios):.2f}× faster ({min(ratios):.2f}–{max(ratios):.2f}, "
                         f"{len(both)} rounds)")
        if parts:
            out.append(f"- {model}, {mp} MP, --precision {precision}, code {code}: wall cold "
                       f"{statistics.median(c):.1f} s [{min(c):.1f}–{max(c):.1f}]; " + "; ".join(parts)
                       + " (median of the alternated rounds' ratios)")
    return (["", "Caches (cold: a first run ever, engine cache off and every module compiled from source; installed: "
             "the engine cache off, the bytecode `make setup` leaves; warm: a second run of the same command):",
             *out] if out else [])


def before_summary(rows: list[dict]) -> list[str]:
    """Lines comparing today's code with ``--before``'s, round by round (median and range of wall and restore
    time, median of the per-round ratios); none without both."""
    import statistics

    groups: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["mp"], r["precision_flag"], r.get("cache", "cold")), {}).setdefault(
            r.get("code", "now"), {})[r.get("round", 0)] = r
    out = []
    for (model, mp, precision, cache), by in groups.items():
        before = next((k for k in by if k != "now"), None)
        if before is None or "now" not in by:
            continue
        both = sorted(set(by["now"]) & set(by[before]))
        parts = []
        for key, what in (("wall_s", "wall"), ("restore_s", "restore")):
            old, new = [by[before][i][key] for i in both], [by["now"][i][key] for i in both]
            ratios = [a / b for a, b in zip(old, new)]
            parts.append(f"{what} {statistics.median(old):.1f} s [{min(old):.1f}–{max(old):.1f}] → "
                         f"{statistics.median(new):.1f} s [{min(new):.1f}–{max(new):.1f}], "
                         f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})")
        out.append(f"- {model}, {mp} MP, --precision {precision}, cache {cache}: " + "; ".join(parts)
                   + f" (median of {len(both)} alternated rounds' ratios)")
    return ["", "Today's code against `--before` (the same command from a worktree of that commit):", *out] \
        if out else []


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["T", "L"], choices=["T", "S", "B", "L"],
                        help="DiffUIR sizes (T: the shipped weights; others: random weights)")
    parser.add_argument("--mp", nargs="+", type=int, default=[1, 4, 12], choices=sorted(PHOTO_SHAPES),
                        help="photo sizes in megapixels")
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "32", "bf16"],
                        help="src.restore --precision values to time (each a row)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=None, help="src.restore --tile (default: its own)")
    parser.add_argument("--tile-overlap", type=int, default=None, help="src.restore --tile-overlap (default: its own)")
    parser.add_argument("--tile-batch", type=int, default=None, help="src.restore --tile-batch (default: its own)")
    parser.add_argument("--timeout", type=float, default=None, help="kill a run after this many seconds")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny check: DiffUIR-T of width 8 with random weights on a 96×128 photo")
    parser.add_argument("--batching", nargs=2, type=int, default=None, metavar=("ROWS", "COLUMNS"),
                        help="instead: the engine on one tile per thread of this shape, tile by tile vs parallel "
                             "streams (shipped DiffUIR-T, alternated --rounds)")
    parser.add_argument("--cache", nargs="+", default=["cold"], choices=["cold", "installed", "warm"],
                        help="the children's engine cache and Python bytecode: cold (neither: a first run ever), "
                             "installed (the bytecode make setup leaves) and/or warm (a second run); several: "
                             "alternated --rounds")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternated rounds of --batching, of --cache cold warm and of --before")
    parser.add_argument("--before", metavar="COMMIT", default=None,
                        help="also run every command with the suite as it was at COMMIT (a git worktree), "
                             "alternated with today's code (order alternated too)")
    parser.add_argument("--before-overlap", type=int, default=None, metavar="PIXELS",
                        help="--before's tile overlap, where its default differed (64 before 2026-12-05)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="OUT.csv and OUT.md are written (replaced)")
    parser.add_argument("--overlaps", nargs="+", type=int, default=None, metavar="PIXELS",
                        help="instead: a 960×1440 photo untiled vs tiled with each overlap (shipped DiffUIR-T): "
                             "agreement and time, written to OUT.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.overlaps:
        with tempfile.TemporaryDirectory(prefix="photo_speed_") as tmp:
            rows = overlap_agreement(SHIPPED, args.overlaps, (960, 1440), args.tile or 512, args.precision[0],
                                     args.threads, Path(tmp))
        from benchmarks.diffuir_speed import cpu_model

        lines = [f"# Tile overlap: a 960×1440 photo untiled vs tiled (`python -m benchmarks.photo_speed --overlaps "
                 f"{' '.join(map(str, args.overlaps))}`, run {dt.datetime.now():%Y-%m-%d %H:%M})", "",
                 f"CPU {cpu_model()}, {args.threads} threads, shipped DiffUIR-T, `{rows[0]['engine_line']}`, tiles of "
                 f"{args.tile or 512}. PSNR-Y and the largest difference (0–255 levels) of each tiled result against "
                 "the untiled one.", "",
                 "| overlap | tiles | pixels computed per pixel | seconds | PSNR vs untiled | max diff |",
                 "|---:|---|---:|---:|---:|---:|"]
        lines += [f"| {r['overlap']} | {r['tiles']} × {r['tile_shape']} | {r['computed_per_pixel']} | {r['seconds']} "
                  f"| {r['psnr_vs_untiled']} | {r['max_diff_levels']} |" for r in rows]
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return rows
    if args.batching:
        return engine_batching(SHIPPED, tuple(args.batching), args.threads, args.rounds)
    from src.restore import build_parser

    defaults = build_parser().parse_args(["x"])
    tile = args.tile if args.tile is not None else defaults.tile
    overlap = args.tile_overlap if args.tile_overlap is not None else defaults.tile_overlap
    tile_batch = args.tile_batch if args.tile_batch is not None else defaults.tile_batch
    from benchmarks.diffuir_speed import cpu_model

    facts = {"run": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "device": args.device,
             "threads": args.threads}
    rows: list[dict] = []
    warmed: set = set()
    with tempfile.TemporaryDirectory(prefix="photo_speed_") as tmp, contextlib.ExitStack() as cleanup:
        workdir = Path(tmp)
        trees = {"now": ROOT}
        if args.before:
            trees[f"before@{args.before[:7]}"] = worktree.checkout(args.before, workdir / "before")
            cleanup.callback(worktree.remove, workdir / "before")
        if "installed" in args.cache:  # the bytecode make setup / make demo leave
            subprocess.run([sys.executable, "-m", "src.utils.bytecode"], cwd=ROOT, check=True)
        shapes = {0: (96, 128)} if args.smoke else {mp: PHOTO_SHAPES[mp] for mp in args.mp}
        sizes = ["T"] if args.smoke else args.sizes
        for size in sizes:
            if args.smoke:
                ckpt, name = random_weights("T", workdir / "tiny", dim=8), "DiffUIR-T (width 8, random)"
            elif size == "T":
                ckpt, name = SHIPPED, "DiffUIR-T (shipped)"
            else:
                ckpt, name = random_weights(size, workdir / f"diffuir_{size}"), f"DiffUIR-{size} (random)"
            macs_px, multiple = macs_per_pixel(ckpt)
            rounds = args.rounds if len(args.cache) > 1 or trees.keys() - {"now"} else 1
            variants = [(cache, code) for cache in args.cache for code in trees]
            for mp, shape in shapes.items():
                for precision in args.precision:
                    for r in range(rounds):
                        for cache, code in (variants if r % 2 == 0 else variants[::-1]):  # order alternated too
                            row = measure(name, ckpt, mp, shape, workdir, args.threads, args.device, precision,
                                          tile if not args.smoke else 64,
                                          (overlap if code == "now" or args.before_overlap is None
                                           else args.before_overlap) if not args.smoke else 16,
                                          tile_batch, macs_px, multiple, args.timeout, cache=cache, warmed=warmed,
                                          code=code, tree=trees[code])
                            rows.append({**facts, "weights": "shipped" if ckpt == SHIPPED else "random",
                                         "round": r, **row})
                            write_rows(args.out.with_suffix(".csv"), rows, COLUMNS)  # after every row: partial runs
                            args.out.with_suffix(".md").write_text(to_markdown(rows, facts))
    print(to_markdown(rows, facts) + f"\nwrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.md')}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
