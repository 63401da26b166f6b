"""Dataset manifests: one CSV per dataset split listing every sample, built once from a dataset's published folder
layout and checked before any training starts.

Format (``data_manifests/README.md`` has the full description): a CSV file with the header ``lq,gt,task,source``;

* ``lq``: the degraded image, relative to the data root; **empty** for a clean image whose degraded version is
  synthesised on the fly from ``gt`` by ``task`` (Diff-Restorer's noise and JPEG training data);
* ``gt``: the reference image, relative to the data root; **empty** for a no-reference set (RTTS, MEF, ...);
* ``task``: one of :data:`src.data.degradations.TASKS`, several joined by ``+`` for a mixed degradation
  (``raindrop+noise+blur``), or ``unknown`` for a degradation outside the eight (TOLED / POLED);
* ``source``: the dataset (``LOL``, ``Snow100K-S``, ...).

Command line (``python -m src.data.manifests --help``)::

    python -m src.data.manifests list                                     # the builders and their layouts
    python -m src.data.manifests build lol --root /data/LOL               # -> data_manifests/lol_{train,test}.csv
    python -m src.data.manifests validate data_manifests/lol_train.csv --data-root /data   # decode every image
    python -m src.data.manifests counts data_manifests/*.csv
    python -m src.data.manifests synth --div2k-valid /data/DIV2K/DIV2K_valid_HR --data-root /data

Problems (missing / unreadable / truncated files, grayscale / RGBA / 16-bit images, LQ/GT size mismatches, unpaired
names) are gathered into one :class:`ManifestError` that lists every bad row with the file, the problem and what was
expected. ``on_error="skip"`` (``--on-error skip``) is the explicit opt-in to drop bad rows instead: each one is
logged and counted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from src.data.degradations import TASKS
from src.data.image_io import ImageProblem, probe_image, read_image

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("lq", "gt", "task", "source")
UNKNOWN_TASK = "unknown"
CHECK_LEVELS = ("none", "exists", "header", "full")
ON_ERROR = ("raise", "skip")
# Sets whose reference images are known to differ in size from their inputs; the reference is resized to the input
# (bicubic) when read, as the SOTS evaluation script does. Anywhere else a size mismatch is an error.
RESIZE_GT_SOURCES = ("SOTS-outdoor",)
DEFAULT_MANIFEST_DIR = Path(__file__).resolve().parents[2] / "data_manifests"
_MAX_LISTED = 50


# --------------------------------------------------------------------------------------------------- rows, errors
@dataclass(frozen=True)
class Row:
    """One manifest row; paths are relative to the data root (POSIX separators); None = empty field."""

    lq: str | None
    gt: str | None
    task: str
    source: str

    @property
    def has_gt(self) -> bool:
        return self.gt is not None

    @property
    def synthetic(self) -> bool:
        """True when the LQ image is synthesised on the fly from ``gt`` (empty ``lq`` field)."""
        return self.lq is None

    @property
    def tasks(self) -> tuple[str, ...]:
        return parse_task(self.task)

    def as_csv(self) -> list[str]:
        return [self.lq or "", self.gt or "", self.task, self.source]


@dataclass(frozen=True)
class Problem:
    """One problem: where it was found (manifest line, dataset split), the file, what is wrong, what was expected."""

    where: str
    path: str
    problem: str
    expected: str
    kind: str = "invalid"

    def __str__(self) -> str:
        return f"{self.where}: {self.path}: {self.problem} (expected {self.expected})"


class ManifestError(ValueError):
    """Every problem found while building, reading or validating a manifest, in one exception."""

    def __init__(self, what: str, problems: Sequence[Problem]):
        self.what, self.problems = what, list(problems)
        kinds = Counter(p.kind for p in self.problems)
        lines = [f"{len(self.problems)} problem(s) in {what} ("
                 + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) + "):"]
        lines += [f"  - {p}" for p in self.problems[:_MAX_LISTED]]
        if len(self.problems) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.problems) - _MAX_LISTED} more")
        if set(kinds) - {"layout"}:
            lines.append("Fix the files, or pass on_error='skip' (CLI: --on-error skip) to drop bad samples "
                         "(each is logged and counted).")
        super().__init__("\n".join(lines))


def parse_task(field: str) -> tuple[str, ...]:
    """``"noise"`` → ``("noise",)``; ``"noise+blur"`` → ``("noise", "blur")``; ``"unknown"`` → ``("unknown",)``.

    Raises ``ValueError`` for anything else.
    """
    parts = tuple(p.strip() for p in str(field).split("+"))
    if parts == (UNKNOWN_TASK,):
        return parts
    bad = [p for p in parts if p not in TASKS]
    if bad or not parts:
        raise ValueError(f"task {field!r}: expected one of {', '.join(TASKS)}, several joined by '+', "
                         f"or '{UNKNOWN_TASK}'")
    return parts


def task_label(field: str, unknown_task: str = "blur") -> int:
    """The batch label of a manifest task: the index in ``TASKS`` of its first component.

    A mixed task (``snow+noise``) is labelled by its first-listed degradation; ``unknown`` (TOLED / POLED) by
    ``unknown_task``.
    """
    first = parse_task(field)[0]
    return TASKS.index(unknown_task if first == UNKNOWN_TASK else first)


# --------------------------------------------------------------------------------------------------- read / write
def write_manifest(rows: Iterable[Row], path: str | os.PathLike) -> Path:
    """Write rows as a manifest CSV (header ``lq,gt,task,source``); parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(MANIFEST_COLUMNS)
        for row in rows:
            w.writerow(row.as_csv())
    return path


def _row_problem(row: Row) -> str | None:
    try:
        parse_task(row.task)
    except ValueError as e:
        return str(e)
    if row.lq is None and row.gt is None:
        return "both lq and gt are empty"
    if row.lq is None and len(row.tasks) != 1:
        return f"synthesised rows (empty lq) need a single task, got {row.task!r}"
    if row.lq is None and row.task == UNKNOWN_TASK:
        return "synthesised rows (empty lq) need a known task"
    if not row.source:
        return "empty source"
    for p in (row.lq, row.gt):
        if p is not None and (os.path.isabs(p) or p.startswith("..")):
            return f"path {p!r} is not relative to the data root"
    return None


def read_manifest(path: str | os.PathLike, on_error: str = "raise") -> list[Row]:
    """Read a manifest CSV, checking its header and the format of every row (not the images).

    Format problems are gathered into one :class:`ManifestError`, or with ``on_error="skip"`` logged, counted and
    dropped.
    """
    _check_choice("on_error", on_error, ON_ERROR)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"manifest {path} not found: build it with `python -m src.data.manifests build <dataset> --root "
            f"<dataset folder>` (see data_manifests/README.md)")
    rows: list[Row] = []
    problems: list[Problem] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != MANIFEST_COLUMNS:
            raise ManifestError(str(path), [Problem(f"{path} line 1", str(path), f"header {header}",
                                                    "the header lq,gt,task,source", "format")])
        for lineno, rec in enumerate(reader, start=2):
            if not rec or all(not c.strip() for c in rec):
                continue
            where = f"{path.name} line {lineno}"
            if len(rec) != 4:
                problems.append(Problem(where, str(path), f"{len(rec)} fields", "4 fields lq,gt,task,source",
                                        "format"))
                continue
            lq, gt, task, source = (c.strip() for c in rec)
            row = Row(lq or None, gt or None, task, source)
            bad = _row_problem(row)
            if bad:
                problems.append(Problem(where, lq or gt or str(path), bad, "a valid manifest row", "format"))
                continue
            rows.append(row)
    _raise_or_skip(str(path), problems, on_error)
    return rows


# --------------------------------------------------------------------------------------------------- checking
@dataclass
class CheckReport:
    """Result of :func:`check_rows`: the rows kept, every problem found, and how many rows were skipped by kind."""

    rows: list[Row]
    problems: list[Problem] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def _raise_or_skip(what: str, problems: list[Problem], on_error: str) -> Counter:
    if not problems:
        return Counter()
    if on_error == "raise":
        raise ManifestError(what, problems)
    for p in problems:
        log.warning("skipping bad sample: %s", p)
    counts = Counter(p.kind for p in problems)
    log.warning("%s: skipped %d bad sample(s) (%s)", what, len(problems),
                ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())))
    return counts


def check_rows(rows: Sequence[Row], data_root: str | os.PathLike, level: str = "header", convert: bool = False,
               on_error: str = "raise", what: str = "manifest", where: Callable[[int], str] | None = None,
               resize_gt_sources: Sequence[str] = RESIZE_GT_SOURCES, jobs: int = 1) -> CheckReport:
    """Check the images of manifest rows under ``data_root``.

    ``level``: ``"none"``; ``"exists"`` (files exist); ``"header"`` (every image's header: readable, 8-bit RGB, LQ
    and GT sizes equal; fast, PIL reads lazily); ``"full"`` (every image decoded, which also finds truncated files).
    ``convert=True`` accepts grayscale / RGBA / palette / 16-bit images (converted to 8-bit RGB when read).
    LQ/GT sizes may differ only for ``resize_gt_sources``. ``jobs`` > 1 checks files in that many threads.

    Raises one :class:`ManifestError` listing every bad row, or with ``on_error="skip"`` drops them (logged and
    counted in the returned report).
    """
    _check_choice("level", level, CHECK_LEVELS)
    _check_choice("on_error", on_error, ON_ERROR)
    root = Path(data_root)
    where = where or (lambda i: f"{what} row {i + 1}")
    if level == "none":
        return CheckReport(list(rows))
    cache: dict[str, tuple[int, int] | ImageProblem] = {}

    def file_check(rel: str) -> tuple[int, int] | ImageProblem:
        if rel in cache:
            return cache[rel]
        path = root / rel
        try:
            if level == "exists":
                if not path.is_file():
                    raise ImageProblem(path, "file not found", "an existing image file", kind="missing")
                result: tuple[int, int] | ImageProblem = (0, 0)
            elif level == "header":
                result = probe_image(path, convert=convert).size
            else:
                arr = read_image(path, convert=convert)
                result = (arr.shape[1], arr.shape[0])
        except ImageProblem as e:
            result = e
        cache[rel] = result
        return result

    def row_check(item: tuple[int, Row]) -> list[Problem]:
        i, row = item
        out, sizes = [], {}
        for col, rel in (("lq", row.lq), ("gt", row.gt)):
            if rel is None:
                continue
            res = file_check(rel)
            if isinstance(res, ImageProblem):
                out.append(Problem(where(i), res.path, f"{col}: {res.problem}", res.expected, res.kind))
            else:
                sizes[col] = res
        if (level in ("header", "full") and len(sizes) == 2 and sizes["lq"] != sizes["gt"]
                and row.source not in resize_gt_sources):
            (lw, lh), (gw, gh) = sizes["lq"], sizes["gt"]
            out.append(Problem(where(i), str(root / row.lq), f"LQ is {lw}×{lh} but its GT {row.gt} is {gw}×{gh}",
                               "LQ and GT of the same size", "size_mismatch"))
        return out

    items = list(enumerate(rows))
    if jobs > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            results = list(ex.map(row_check, items, chunksize=64))
    else:
        results = [row_check(it) for it in items]
    problems = [p for res in results for p in res]
    skipped = _raise_or_skip(what, problems, on_error)
    kept = [row for row, res in zip(rows, results) if not res]
    return CheckReport(kept, problems, skipped)


def validate_manifest(path: str | os.PathLike, data_root: str | os.PathLike, level: str = "full",
                      convert: bool = False, on_error: str = "raise", jobs: int = 1,
                      resize_gt_sources: Sequence[str] = RESIZE_GT_SOURCES) -> CheckReport:
    """Read a manifest and check every image (decoded fully by default); see :func:`check_rows`."""
    path = Path(path)
    rows = read_manifest(path, on_error=on_error)
    # data lines start at line 2; blank lines are skipped by read_manifest, so name rows by position and path
    return check_rows(rows, data_root, level=level, convert=convert, on_error=on_error, what=str(path),
                      where=lambda i: f"{path.name} row {i + 1}", resize_gt_sources=resize_gt_sources, jobs=jobs)


def load_manifest(path: str | os.PathLike, data_root: str | os.PathLike, level: str = "exists",
                  convert: bool = False, on_error: str = "raise", jobs: int = 1) -> list[Row]:
    """Read and check a manifest at the start of a run (what the DataModules call); returns the usable rows."""
    return validate_manifest(path, data_root, level=level, convert=convert, on_error=on_error, jobs=jobs).rows


# --------------------------------------------------------------------------------------------------- counts
def task_counts(rows: Iterable[Row]) -> Counter:
    return Counter(r.task for r in rows)


def format_counts(splits: dict[str, Sequence[Row]], title: str = "") -> str:
    """A plain-text table: one line per split with its total, per-task counts, no-reference and synthetic rows."""
    lines = [title] if title else []
    for split, rows in splits.items():
        counts = task_counts(rows)
        extra = []
        if (n := sum(not r.has_gt for r in rows)):
            extra.append(f"no reference: {n}")
        if (n := sum(r.synthetic for r in rows)):
            extra.append(f"synthesised LQ: {n}")
        per_task = ", ".join(f"{t}: {n}" for t, n in sorted(counts.items()))
        sources = ", ".join(sorted({r.source for r in rows}))
        lines.append(f"  {split:<16} {len(rows):>7} rows  [{per_task}]  sources: {sources}"
                     + (f"  ({'; '.join(extra)})" if extra else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- building
@contextlib.contextmanager
def _quiet():
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


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


@dataclass
class BuildOutput:
    """What :func:`build_manifests` produced: the rows of each split, the files written, every problem, notes."""

    name: str
    splits: dict[str, list[Row]]
    files: dict[str, Path]
    problems: list[Problem]
    skipped: Counter
    notes: list[str]

    def report(self) -> str:
        text = format_counts(self.splits, f"{self.name}: {sum(len(r) for r in self.splits.values())} rows")
        if self.notes:
            text += "\n" + "\n".join(f"  note: {n}" for n in self.notes)
        if self.skipped:
            text += "\n  skipped bad samples: " + ", ".join(f"{k}: {n}" for k, n in sorted(self.skipped.items()))
        if self.files:
            text += "\n" + "\n".join(f"  wrote {p}" for p in self.files.values())
        return text


def build_manifests(name: str, root: str | os.PathLike, data_root: str | os.PathLike | None = None,
                    out_dir: str | os.PathLike | None = DEFAULT_MANIFEST_DIR, check: str = "header",
                    on_error: str = "raise", convert: bool = False, jobs: int = 4) -> BuildOutput:
    """Scan dataset ``name`` under ``root`` (its published layout), pair LQ and GT, check, and write the manifests.

    Paths are written relative to ``data_root`` (default :func:`default_data_root`). Files are named
    ``<out_dir>/<name>_<split>.csv``; ``out_dir=None`` writes nothing. Pairing problems (unpaired or ambiguous
    names, unexpected file names) and image problems (``check`` level, see :func:`check_rows`) are raised together
    as one :class:`ManifestError`, or skipped with ``on_error="skip"``.
    """
    from src.data.builders import get_builder
    from src.data.builders.common import BuildContext

    _check_choice("check", check, CHECK_LEVELS)
    _check_choice("on_error", on_error, ON_ERROR)
    builder = get_builder(name)
    root = _abs(root)
    data_root = _abs(data_root) if data_root is not None else default_data_root(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: dataset root {root} is not a folder.\nExpected layout:\n{builder.layout}")
    ctx = BuildContext(name=name, root=root, data_root=data_root)
    result = builder.fn(ctx)
    if not any(result.splits.values()):
        raise ManifestError(f"{name} under {root}", result.problems or [Problem(
            name, str(root), "no samples found in any known layout", "the layout:\n" + builder.layout, "layout")])
    problems = list(result.problems)
    checked: dict[str, list[Row]] = {}
    with _quiet():  # problems are reported once, below, for all splits together
        for split, rows in result.splits.items():
            rep = check_rows(rows, data_root, level=check, convert=convert, on_error="skip", what=f"{name} {split}",
                             where=lambda i, s=split: f"{name} {s} row {i + 1}", jobs=jobs)
            problems += rep.problems
            checked[split] = rep.rows
    skipped = _raise_or_skip(f"{name} under {root}", problems, on_error)
    files = {}
    if out_dir is not None:
        for split, rows in checked.items():
            if rows:
                files[split] = write_manifest(rows, Path(out_dir) / f"{name}_{split}.csv")
    out = BuildOutput(name, checked, files, problems, skipped, list(result.notes))
    log.info("%s", out.report())
    return out


# --------------------------------------------------------------------------------------------------- CLI
def _cmd_list(args) -> int:
    from src.data.builders import BUILDERS

    for b in BUILDERS.values():
        print(f"{b.name:<12} {b.description}\n" + "\n".join("    " + line for line in b.layout.splitlines()))
    return 0


def _cmd_build(args) -> int:
    out = build_manifests(args.dataset, args.root, args.data_root, args.out, check=args.check,
                          on_error=args.on_error, convert=args.convert, jobs=args.jobs)
    print(out.report())
    return 0


def _cmd_validate(args) -> int:
    status = 0
    for m in args.manifests:
        data_root = args.data_root or os.environ.get("UIR_DATA") or "."
        try:
            rep = validate_manifest(m, data_root, level=args.level, convert=args.convert, on_error=args.on_error,
                                    jobs=args.jobs)
        except ManifestError as e:
            print(e, file=sys.stderr)
            status = 1
            continue
        extra = f", skipped {rep.n_skipped} ({dict(rep.skipped)})" if rep.n_skipped else ""
        print(f"{m}: {len(rep.rows)} rows OK ({args.level} check){extra}")
    return status


def _cmd_counts(args) -> int:
    print(format_counts({Path(m).stem: read_manifest(m) for m in args.manifests}))
    return 0


def _cmd_synth(args) -> int:
    from src.data.synthetic_sets import SYNTHETIC_SETS, generate_sets

    sets = args.sets.split(",") if args.sets else list(SYNTHETIC_SETS)
    data_root = Path(args.data_root) if args.data_root else default_data_root(args.div2k_valid)
    out = generate_sets(args.div2k_valid, data_root, out_subdir=args.out_subdir, sets=sets, seed=args.seed,
                        manifest_dir=args.manifests_out, limit=args.limit, crop=args.crop)
    for name, path in out.items():
        print(f"{name}: {path}")
    return 0


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
    b.add_argument("--check", default="header", choices=CHECK_LEVELS,
                   help="image check while building (default: header; full decodes every image)")
    v = sub.add_parser("validate", help="check manifests: every image decoded, modes, sizes")
    v.add_argument("manifests", nargs="+")
    v.add_argument("--data-root", default=None, help="default: $UIR_DATA, else the current folder")
    v.add_argument("--level", default="full", choices=CHECK_LEVELS)
    for q in (b, v):
        q.add_argument("--on-error", default="raise", choices=ON_ERROR,
                       help="skip: drop bad samples (each logged and counted) instead of failing")
        q.add_argument("--convert", action="store_true",
                       help="accept grayscale / RGBA / palette / 16-bit images (converted to 8-bit RGB)")
        q.add_argument("--jobs", type=int, default=4, help="threads used to check images")
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
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    handler = {"list": _cmd_list, "build": _cmd_build, "validate": _cmd_validate, "counts": _cmd_counts,
               "synth": _cmd_synth}[args.cmd]
    try:
        return handler(args)
    except (ManifestError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
