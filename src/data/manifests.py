"""Dataset manifests: the command line and the build step (scan a dataset's published folder layout with its
builder, pair, check every image, write one CSV per split).

Layers: :mod:`src.data.manifest_format` (the format: rows, reading, writing, checking) at the bottom, the builders
(:mod:`src.data.builders`) above it, this module on top. The format's names are re-exported here, so
``from src.data.manifests import Row, read_manifest, ...`` keeps working.

Command line (``python -m src.data.manifests --help``)::

    python -m src.data.manifests list                                     # the builders and their layouts
    python -m src.data.manifests build lol --root /data/LOL               # -> data_manifests/lol_{train,test}.csv
    python -m src.data.manifests validate data_manifests/lol_train.csv --data-root /data   # decode every image
    python -m src.data.manifests counts data_manifests/*.csv
    python -m src.data.manifests synth --div2k-valid /data/DIV2K/DIV2K_valid_HR --data-root /data

``build`` decodes every image by default (in ``--jobs`` threads, with a progress bar on a terminal; ``--quick``
reads headers only), so a truncated or corrupt file is named at build time. An expected split that is missing or
has no rows is an error unless ``--skip-missing``; a rebuild removes (and names) the manifests of the dataset that
an earlier build wrote and this one does not, also when this one fails, so no stale manifest is left in place.
Problems (missing / unreadable / truncated files, grayscale / RGBA / 16-bit images, LQ/GT size mismatches, unpaired
names, duplicate rows) are gathered into one :class:`ManifestError`; ``--on-error skip`` is the explicit opt-in to
drop bad rows instead: each problem is logged, and dropped rows and unpaired files are counted separately.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from src.data.builders import BUILDERS, get_builder
from src.data.builders.common import BuildContext
from src.data.manifest_format import (  # noqa: F401  (re-exported: the format's public names)
    CHECK_LEVELS,
    DEFAULT_MANIFEST_DIR,
    MANIFEST_COLUMNS,
    ON_ERROR,
    RESIZE_GT_SOURCES,
    UNKNOWN_TASK,
    CheckReport,
    ManifestError,
    Problem,
    Row,
    _check_choice,
    _raise_or_skip,
    check_rows,
    duplicate_problems,
    format_counts,
    is_manifest_file,
    load_manifest,
    parse_task,
    quiet,
    read_manifest,
    task_counts,
    task_label,
    validate_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- building
def _abs(path: str | os.PathLike) -> Path:
    """Absolute and normalised, symbolic links kept (paths must stay under the data root as the user sees it)."""
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def default_data_root(root: str | os.PathLike) -> Path:
    """``$UIR_DATA`` when it contains ``root``, else the parent of ``root``."""
    root = _abs(root)
    env = os.environ.get("UIR_DATA")
    if env:
        env_root = _abs(env)
        if root == env_root or env_root in root.parents:
            return env_root
    return root.parent


def dataset_manifests(out_dir: str | os.PathLike, name: str) -> list[Path]:
    """The manifests of dataset ``name`` in ``out_dir`` (``<name>_<split>.csv`` with the manifest header; files of a
    builder whose name extends ``name`` are not included)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    longer = [b for b in BUILDERS if b != name and b.startswith(name + "_")]
    return sorted(f for f in out_dir.glob(f"{name}_*.csv")
                  if not any(f.name.startswith(b + "_") for b in longer) and is_manifest_file(f))


def _remove(files: Sequence[Path]) -> list[Path]:
    removed = []
    for f in files:
        try:
            f.unlink()
            removed.append(f)
        except FileNotFoundError:
            pass
    return removed


@dataclass
class BuildOutput:
    """What :func:`build_manifests` produced: the rows of each split, the files written, every problem, the problems
    by kind that ``on_error="skip"`` dropped, notes, the manifests of an earlier build that were removed, and the
    rows dropped (a row with two problems counts once)."""

    name: str
    splits: dict[str, list[Row]]
    files: dict[str, Path]
    problems: list[Problem]
    skipped: Counter
    notes: list[str]
    removed: list[Path] = field(default_factory=list)
    dropped_rows: int = 0
    unpaired: Counter = field(default_factory=Counter)

    def report(self) -> str:
        text = format_counts(self.splits, f"{self.name}: {sum(len(r) for r in self.splits.values())} rows")
        if self.notes:
            text += "\n" + "\n".join(f"  note: {n}" for n in self.notes)
        if self.dropped_rows:
            kinds = self.skipped - self.unpaired
            text += (f"\n  dropped {self.dropped_rows} bad row(s) (problems: "
                     + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) + ")")
        if self.unpaired:
            text += (f"\n  left out {sum(self.unpaired.values())} file(s) that could not be paired ("
                     + ", ".join(f"{k}: {n}" for k, n in sorted(self.unpaired.items())) + ")")
        if self.files:
            text += "\n" + "\n".join(f"  wrote {p}" for p in self.files.values())
        if self.removed:
            text += "\n" + "\n".join(f"  removed {p} (a manifest of an earlier build: this build has no such split)"
                                      for p in self.removed)
        return text


def build_manifests(name: str, root: str | os.PathLike, data_root: str | os.PathLike | None = None,
                    out_dir: str | os.PathLike | None = DEFAULT_MANIFEST_DIR, check: str = "full",
                    on_error: str = "raise", convert: bool = False, jobs: int = 4, skip_missing: bool = False,
                    progress: bool = False) -> BuildOutput:
    """Scan dataset ``name`` under ``root`` (its published layout), pair LQ and GT, check, and write the manifests.

    Paths are written relative to ``data_root`` (default :func:`default_data_root`). Files are named
    ``<out_dir>/<name>_<split>.csv``; ``out_dir=None`` writes nothing. ``check`` (default ``full``: every image
    decoded, in ``jobs`` threads; ``header`` is the quick check) as in :func:`check_rows`; ``progress`` shows a bar
    per split on a terminal.

    Raised together as one :class:`ManifestError`: pairing problems (unpaired or ambiguous names, unexpected file
    names), image problems, duplicate rows (those three skipped with ``on_error="skip"``) and, unless
    ``skip_missing``, each of the builder's expected splits (:attr:`Builder.splits`) that is missing and each split
    found without rows. The dataset's manifests in ``out_dir`` that this build does not write (a split gone, or the
    whole build failed) are removed, and named in the report or the error.
    """
    _check_choice("check", check, CHECK_LEVELS)
    _check_choice("on_error", on_error, ON_ERROR)
    builder = get_builder(name)
    name = builder.name
    root = _abs(root)
    data_root = _abs(data_root) if data_root is not None else default_data_root(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: dataset root {root} is not a folder.\nExpected layout:\n{builder.layout}")
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise FileNotFoundError(f"output folder {out_dir} exists and is not a folder")
    ctx = BuildContext(name=name, root=root, data_root=data_root)
    result = builder.fn(ctx)
    earlier = dataset_manifests(out_dir, name) if out_dir is not None else []
    what = f"{name} under {root}"

    def fail(problems: list[Problem]):
        removed = _remove(earlier)
        extra = [f"Removed {p} (a manifest of an earlier build, so that no stale manifest is used)" for p in removed]
        return ManifestError(what, problems, extra)

    if not any(result.splits.values()) and not result.found:
        raise fail(result.problems or [Problem(name, str(root), "no samples found in any known layout",
                                               "the layout:\n" + builder.layout, "layout")])
    problems = list(result.problems)
    unpaired = Counter(p.kind for p in problems)
    checked: dict[str, list[Row]] = {}
    dropped = 0
    with quiet():  # problems are reported once, below, for all splits together
        for split, rows in result.splits.items():
            dups, dup_idx = duplicate_problems(rows, f"{name} {split}")
            rows = [r for i, r in enumerate(rows) if i not in dup_idx]
            rep = check_rows(rows, data_root, level=check, convert=convert, on_error="skip", what=f"{name} {split}",
                             where=lambda i, s=split: f"{name} {s} row {i + 1}", jobs=jobs,
                             progress=f"{name} {split}" if progress else None)
            problems += dups + rep.problems
            dropped += len(dup_idx) + rep.n_skipped
            checked[split] = rep.rows
    split_problems = [Problem(f"{name} {s}", str(root), f"split {s!r} not found",
                              "its folders as in the layout:\n" + builder.layout, "missing_split")
                      for s in builder.splits if s not in result.found and s not in result.splits]
    split_problems += [Problem(f"{name} {s}", str(root), f"split {s!r} has no rows"
                               + (" left after dropping bad ones" if result.splits.get(s) else " (no images found)"),
                               "at least one sample", "empty_split")
                       for s in sorted(set(result.found) | set(checked))
                       if not (checked if on_error == "skip" else result.splits).get(s)]
    fatal = problems if on_error == "raise" else []
    if not skip_missing:
        fatal = fatal + split_problems
    if fatal or not any(checked.values()):
        raise fail(fatal or problems + split_problems)
    skipped = _raise_or_skip(what, problems, on_error, dropped)
    notes = list(result.notes) + [f"skipped (--skip-missing): {p.problem}" for p in split_problems]
    files: dict[str, Path] = {}
    removed: list[Path] = []
    if out_dir is not None:
        for split, rows in checked.items():
            if rows:
                files[split] = write_manifest(rows, Path(out_dir) / f"{name}_{split}.csv")
        removed = _remove([f for f in earlier if f not in set(files.values())])
    out = BuildOutput(name, checked, files, problems, skipped, notes, removed, dropped, unpaired)
    log.info("%s", out.report())
    return out


# --------------------------------------------------------------------------------------------------- CLI
def _cmd_list(args) -> int:
    for b in BUILDERS.values():
        print(f"{b.name:<12} {b.description}\n" + "\n".join("    " + line for line in b.layout.splitlines()))
    return 0


def _cmd_build(args) -> int:
    check = "header" if args.quick else args.check
    try:
        out = build_manifests(args.dataset, args.root, args.data_root, args.out, check=check, on_error=args.on_error,
                              convert=args.convert, jobs=args.jobs, skip_missing=args.skip_missing, progress=True)
    except ManifestError as e:  # bad data, not bad usage
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out.report())
    return 0


def _cmd_validate(args) -> int:
    status = 0
    for m in args.manifests:
        data_root = args.data_root or os.environ.get("UIR_DATA") or "."
        try:
            rep = validate_manifest(m, data_root, level=args.level, convert=args.convert, on_error=args.on_error,
                                    jobs=args.jobs, progress=Path(m).name)
        except ManifestError as e:
            print(e, file=sys.stderr)
            status = 1
            continue
        extra = (f", dropped {rep.n_skipped} bad row(s) (problems: "
                 + ", ".join(f"{k}: {n}" for k, n in sorted(rep.skipped.items())) + ")") if rep.n_skipped else ""
        print(f"{m}: {len(rep.rows)} rows OK ({args.level} check){extra}")
    return status


def _cmd_counts(args) -> int:
    print(format_counts({Path(m).stem: read_manifest(m) for m in args.manifests}))
    return 0


def _cmd_synth(args) -> int:
    from src.data.synthetic_sets import SYNTHETIC_SETS, generate_sets  # heavy (degradations): only for this command

    sets = args.sets.split(",") if args.sets else list(SYNTHETIC_SETS)
    data_root = Path(args.data_root) if args.data_root else default_data_root(args.div2k_valid)
    out = generate_sets(args.div2k_valid, data_root, out_subdir=args.out_subdir, sets=sets, seed=args.seed,
                        manifest_dir=args.manifests_out, limit=args.limit, crop=args.crop)
    for name, path in out.items():
        print(f"{name}: {path}")
    return 0


def _cmd_shards(args) -> int:
    from src.data.shards import build_shards  # litdata (the `shards` extra): only for this command

    data_root = Path(args.data_root or os.environ.get("UIR_DATA") or ".")
    rows = [r for m in args.manifests for r in load_manifest(m, data_root, level="exists", convert=args.convert)]
    out = build_shards(rows, data_root, args.out, resize_to=args.resize, convert=args.convert,
                       manifests=[str(m) for m in args.manifests])
    print(f"{len(rows)} rows -> {out} (train with +data.shards={out})")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a whole number >= 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m src.data.manifests", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the dataset builders and the folder layouts they read")
    b = sub.add_parser("build", help="scan a dataset folder and write its manifests")
    b.add_argument("dataset", help="builder name (see `list`)")
    b.add_argument("--root", required=True, help="the dataset's top folder, e.g. /data/LOL")
    b.add_argument("--data-root", default=None, help="paths are written relative to this (default: $UIR_DATA if it "
                   "contains --root, else the parent of --root)")
    b.add_argument("--out", default=str(DEFAULT_MANIFEST_DIR), help="where to write <dataset>_<split>.csv")
    b.add_argument("--check", default="full", choices=CHECK_LEVELS,
                   help="image check while building (default: full, every image decoded)")
    b.add_argument("--quick", action="store_true", help="read image headers only (same as --check header): fast, "
                   "but a truncated file is found only when it is read")
    b.add_argument("--skip-missing", action="store_true", help="build the splits that are there: an expected split "
                   "that is missing or has no rows is noted (and its old manifest removed) instead of an error")
    v = sub.add_parser("validate", help="check manifests: every image decoded, modes, sizes")
    v.add_argument("manifests", nargs="+")
    v.add_argument("--data-root", default=None, help="default: $UIR_DATA, else the current folder")
    v.add_argument("--level", default="full", choices=CHECK_LEVELS)
    for q in (b, v):
        q.add_argument("--on-error", default="raise", choices=ON_ERROR,
                       help="skip: drop bad samples (each logged and counted) instead of failing")
        q.add_argument("--convert", action="store_true",
                       help="accept grayscale / RGBA / palette / 16-bit images (converted to 8-bit RGB)")
        q.add_argument("--jobs", type=_positive_int, default=4, help="threads used to check images (default 4)")
    c = sub.add_parser("counts", help="rows per task of manifests")
    c.add_argument("manifests", nargs="+")
    s = sub.add_parser("synth", help="write the fixed synthetic test sets (noise σ=50, JPEG q=10, mixed) from "
                       "DIV2K's validation images, with their manifests")
    s.add_argument("--div2k-valid", required=True, help="the DIV2K_valid_HR folder")
    s.add_argument("--data-root", default=None)
    s.add_argument("--out-subdir", default="synthetic/DIV2K_valid", help="output folder, relative to --data-root")
    s.add_argument("--manifests-out", default=str(DEFAULT_MANIFEST_DIR))
    s.add_argument("--sets", default=None, help="comma-separated subset of the synthetic sets (default: all)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    s.add_argument("--crop", type=int, default=None, help="centre-crop each image to this size first")
    sh = sub.add_parser("shards", help="write the decoded training images of manifests as litdata shards "
                        "(optionally resized once, e.g. to Diff-Restorer's 512²) for large-scale runs")
    sh.add_argument("manifests", nargs="+")
    sh.add_argument("--out", required=True, help="a new folder for the shards")
    sh.add_argument("--data-root", default=None, help="default: $UIR_DATA, else the current folder")
    sh.add_argument("--resize", type=_positive_int, default=None, help="resize every image to this size² "
                    "(only for pipelines that resize whole images: Diff-Restorer's resize_mode=resize)")
    sh.add_argument("--convert", action="store_true", help="accept grayscale / RGBA / palette / 16-bit images")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    handler = {"list": _cmd_list, "build": _cmd_build, "validate": _cmd_validate, "counts": _cmd_counts,
               "synth": _cmd_synth, "shards": _cmd_shards}[args.cmd]
    try:
        return handler(args)
    except (ManifestError, OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
