"""Dataset manifests, the format: one CSV per dataset split listing every sample; reading, writing and checking.

This is the bottom layer of the manifest code: the dataset builders (:mod:`src.data.builders`) produce its
:class:`Row` objects, :mod:`src.data.manifests` (the ``python -m src.data.manifests`` command line) builds and writes
them, and the datasets / DataModules read them.

Format (``data_manifests/README.md`` has the full description): a UTF-8 CSV file with the header
``lq,gt,task,source``;

* ``lq``: the degraded image, relative to the data root; **empty** for a clean image whose degraded version is
  synthesised on the fly from ``gt`` by ``task`` (Diff-Restorer's noise and JPEG training data);
* ``gt``: the reference image, relative to the data root; **empty** for a no-reference set (RTTS, MEF, ...);
* ``task``: one of :data:`src.tasks.TASKS`, several joined by ``+`` for a mixed degradation
  (``raindrop+noise+blur``), or ``unknown`` for a degradation outside the eight (TOLED / POLED);
* ``source``: the dataset (``LOL``, ``Snow100K-S``, ...).

Problems (a file that is not UTF-8, malformed or duplicate rows, missing / unreadable / truncated images,
grayscale / RGBA / 16-bit images, LQ/GT size mismatches) are gathered into one :class:`ManifestError` that lists
every bad row with the manifest file and line, the image file, the problem and what was expected.
``on_error="skip"`` is the explicit opt-in to drop bad rows instead: each problem is logged, and the rows dropped
are counted (a row with two problems is one row).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from src.data.image_io import ImageProblem, probe_image, read_image
from src.tasks import TASKS

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("lq", "gt", "task", "source")
UNKNOWN_TASK = "unknown"
CHECK_LEVELS = ("none", "exists", "header", "full")
ON_ERROR = ("raise", "skip")
# Sets whose reference images are known to differ in size from their inputs; the reference is resized to the input
# (bicubic) when read, as the SOTS evaluation script does. Anywhere else a size mismatch is an error.
RESIZE_GT_SOURCES = ("SOTS-outdoor",)
DEFAULT_MANIFEST_DIR = Path(__file__).resolve().parents[2] / "data_manifests"
# problems that no on_error="skip" can drop (the file as a whole is unusable, or a split is missing)
_FATAL_KINDS = {"encoding", "header", "missing_split", "empty_split"}
_MAX_LISTED = 50


# --------------------------------------------------------------------------------------------------- rows, errors
@dataclass(frozen=True)
class Row:
    """One manifest row; paths are relative to the data root (POSIX separators); None = empty field.

    ``manifest`` and ``line`` say where the row was read (None for rows made in memory); they are not part of the
    row's value (equality, hashing).
    """

    lq: str | None
    gt: str | None
    task: str
    source: str
    manifest: str | None = field(default=None, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

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

    @property
    def origin(self) -> str | None:
        """``"<manifest> line <n>"`` for a row read from a file, else None."""
        return f"{self.manifest} line {self.line}" if self.manifest else None

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

    def __init__(self, what: str, problems: Sequence[Problem], extra: Sequence[str] = ()):
        self.what, self.problems = what, list(problems)
        kinds = Counter(p.kind for p in self.problems)
        lines = [f"{len(self.problems)} problem(s) in {what} ("
                 + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) + "):"]
        lines += [f"  - {p}" for p in self.problems[:_MAX_LISTED]]
        if len(self.problems) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.problems) - _MAX_LISTED} more")
        if set(kinds) & {"missing_split", "empty_split"}:
            lines.append("Add the split's images, or pass skip_missing=True (CLI: --skip-missing) to build the other "
                         "splits without it.")
        if set(kinds) - _FATAL_KINDS - {"layout"}:
            lines.append("Fix the files, or pass on_error='skip' (CLI: --on-error skip) to drop bad rows "
                         "(each is logged and counted).")
        lines += list(extra)
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


def is_manifest_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file whose first line is the manifest header (so it is safe to replace)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    return first.decode("utf-8", "replace").lstrip("\ufeff").strip() == ",".join(MANIFEST_COLUMNS)


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
        if p is not None and (os.path.isabs(p) or ".." in p.replace("\\", "/").split("/")):
            return f"path {p!r} is not inside the data root (absolute, or with '..')"
        if p is not None and any(ord(c) < 32 and c not in "\t\n" for c in p):
            return f"path {p!r} contains a control character (a NUL byte or similar)"
    return None


def duplicate_problems(rows: Iterable[Row], what: str = "rows") -> tuple[list[Problem], set[int]]:
    """Rows listing the same sample (``lq``, ``gt``, ``task``) as an earlier row: one problem each, naming both rows
    (manifest and line when known); returns (problems, indices of the later copies)."""
    first: dict[tuple, tuple[int, Row]] = {}
    problems, dup = [], set()
    for i, r in enumerate(rows):
        key = (r.lq, r.gt, r.task)
        if key in first:
            j, earlier = first[key]
            where = r.origin or f"{what} row {i + 1}"
            was = earlier.origin or f"{what} row {j + 1}"
            if earlier.manifest == r.manifest and earlier.line is not None:
                was = f"line {earlier.line}"
            problems.append(Problem(where, r.lq or r.gt or "", f"duplicate row: the same sample as {was}",
                                    "each sample listed once", "duplicate"))
            dup.add(i)
        else:
            first[key] = (i, r)
    return problems, dup


def _decode_text(path: Path) -> str:
    """The manifest's text (UTF-8, a byte-order mark allowed); a non-UTF-8 byte is a :class:`ManifestError` naming
    the file, line and column."""
    try:
        data = path.read_bytes()
    except OSError as e:  # permissions, I/O errors: the file named, no traceback
        raise OSError(f"manifest {path} cannot be read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ManifestError(str(path), [Problem(f"{path} line {line}", str(path),
                                                f"byte 0x{data[e.start]:02x} at column {col} is not UTF-8",
                                                "a UTF-8 text file (re-save the manifest as UTF-8)",
                                                "encoding")]) from None


def _read_rows(path: Path) -> tuple[list[Row], list[Problem], int]:
    """Rows and format problems of a manifest file; the third value is the number of data rows with problems."""
    if path.exists() and not path.is_file():
        raise FileNotFoundError(f"manifest {path} is not a file")
    if not path.is_file():
        raise FileNotFoundError(
            f"manifest {path} not found: build it with `python -m src.data.manifests build <dataset> --root "
            f"<dataset folder>` (see data_manifests/README.md)")
    reader = csv.reader(io.StringIO(_decode_text(path), newline=""))
    rows: list[Row] = []
    problems: list[Problem] = []
    bad_rows = 0
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != MANIFEST_COLUMNS:
            raise ManifestError(str(path), [Problem(f"{path} line 1", str(path), f"header {header}",
                                                    "the header lq,gt,task,source", "header")])
        for rec in reader:
            lineno = reader.line_num
            if not rec or all(not c.strip() for c in rec):
                continue
            where = f"{path} line {lineno}"
            if len(rec) != 4:
                problems.append(Problem(where, str(path), f"{len(rec)} fields", "4 fields lq,gt,task,source",
                                        "format"))
                bad_rows += 1
                continue
            lq, gt, task, source = (c.strip() for c in rec)
            row = Row(lq or None, gt or None, task, source, str(path), lineno)
            bad = _row_problem(row)
            if bad:
                problems.append(Problem(where, lq or gt or str(path), bad, "a valid manifest row", "format"))
                bad_rows += 1
                continue
            rows.append(row)
    except csv.Error as e:
        raise ManifestError(str(path), [Problem(f"{path} line {reader.line_num}", str(path), f"not CSV: {e}",
                                                "a CSV file with the header lq,gt,task,source", "encoding")]) from None
    dups, dup_idx = duplicate_problems(rows)
    problems += dups
    rows = [r for i, r in enumerate(rows) if i not in dup_idx]
    return rows, problems, bad_rows + len(dup_idx)


def read_manifest(path: str | os.PathLike, on_error: str = "raise") -> list[Row]:
    """Read a manifest CSV, checking its encoding, header, and the format of every row (not the images); rows
    listing the same sample twice are an error.

    Format problems are gathered into one :class:`ManifestError` naming the file and line of each, or with
    ``on_error="skip"`` logged and dropped (the first of duplicate rows is kept). Each row remembers its manifest
    and line (:attr:`Row.origin`).
    """
    _check_choice("on_error", on_error, ON_ERROR)
    path = Path(path)
    rows, problems, dropped = _read_rows(path)
    _raise_or_skip(str(path), problems, on_error, dropped)
    return rows


# --------------------------------------------------------------------------------------------------- checking
@dataclass
class CheckReport:
    """Result of :func:`check_rows`: the rows kept, every problem found, the problems by kind (``skipped``), and the
    number of rows dropped (``n_skipped``: a row with two problems counts once)."""

    rows: list[Row]
    problems: list[Problem] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    n_skipped: int = 0


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def _raise_or_skip(what: str, problems: list[Problem], on_error: str, rows_dropped: int | None = None) -> Counter:
    """Raise one :class:`ManifestError` for ``problems``, or (``on_error="skip"``) log each and a summary that
    counts rows, not problems; returns the problems by kind."""
    if not problems:
        return Counter()
    if on_error == "raise" or any(p.kind in _FATAL_KINDS for p in problems):
        raise ManifestError(what, problems)
    for p in problems:
        log.warning("skipping bad sample: %s", p)
    counts = Counter(p.kind for p in problems)
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()))
    if rows_dropped is not None:
        log.warning("%s: dropped %d row(s) with problems (%d problem(s): %s)", what, rows_dropped, len(problems),
                    kinds)
    return counts


@contextlib.contextmanager
def quiet():
    """Silence this module's per-problem warnings (for callers that report the problems themselves)."""
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _progress(iterable, total: int, desc: str | None):
    """A progress bar on stderr when ``desc`` is given and stderr is a terminal (tqdm comes with Lightning)."""
    if not desc:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a Lightning dependency
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="row", disable=None, leave=False)


def check_rows(rows: Sequence[Row], data_root: str | os.PathLike, level: str = "header", convert: bool = False,
               on_error: str = "raise", what: str = "manifest", where: Callable[[int], str] | None = None,
               resize_gt_sources: Sequence[str] = RESIZE_GT_SOURCES, jobs: int = 1,
               progress: str | None = None) -> CheckReport:
    """Check the images of manifest rows under ``data_root``.

    ``level``: ``"none"``; ``"exists"`` (files exist); ``"header"`` (every image's header: readable, 8-bit RGB, LQ
    and GT sizes equal; fast, PIL reads lazily); ``"full"`` (every image decoded, which also finds truncated files).
    ``convert=True`` accepts grayscale / RGBA / palette / 16-bit images (converted to 8-bit RGB when read).
    LQ/GT sizes may differ only for ``resize_gt_sources``. ``jobs`` > 1 checks files in that many threads (Pillow
    decodes without holding the GIL). ``progress``: the label of a progress bar (shown on a terminal only).
    Problems name the row by ``where(i)``, by default its manifest and line (:attr:`Row.origin`).

    Raises one :class:`ManifestError` listing every bad row, or with ``on_error="skip"`` drops them (logged and
    counted in the returned report).
    """
    _check_choice("level", level, CHECK_LEVELS)
    _check_choice("on_error", on_error, ON_ERROR)
    root = Path(data_root)
    if level != "none" and rows and not root.is_dir():
        raise FileNotFoundError(f"data root {root} is not a folder (the manifests' paths are relative to it: "
                                "--data-root, or paths.data_dir / the UIR_DATA environment variable)")
    where = where or (lambda i: rows[i].origin or f"{what} row {i + 1}")
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
                    raise ImageProblem(path, "no such file", "an existing image file", "missing")
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
                out.append(Problem(where(i), res.path, f"{col}: {res.problem}", res.expected or "an image",
                                   res.kind))
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
            results = list(_progress(ex.map(row_check, items), len(items), progress))
    else:
        results = list(_progress(map(row_check, items), len(items), progress))
    problems = [p for res in results for p in res]
    kept = [row for row, res in zip(rows, results) if not res]
    skipped = _raise_or_skip(what, problems, on_error, len(rows) - len(kept))
    return CheckReport(kept, problems, skipped, len(rows) - len(kept))


def validate_manifest(path: str | os.PathLike, data_root: str | os.PathLike, level: str = "full",
                      convert: bool = False, on_error: str = "raise", jobs: int = 1,
                      resize_gt_sources: Sequence[str] = RESIZE_GT_SOURCES, progress: str | None = None
                      ) -> CheckReport:
    """Read a manifest and check every image (decoded fully by default); see :func:`read_manifest` and
    :func:`check_rows`. Format and image problems come in one :class:`ManifestError`."""
    _check_choice("on_error", on_error, ON_ERROR)
    path = Path(path)
    rows, fmt_problems, fmt_dropped = _read_rows(path)
    with quiet() if fmt_problems else contextlib.nullcontext():
        rep = check_rows(rows, data_root, level=level, convert=convert,
                         on_error="skip" if fmt_problems else on_error, what=str(path),
                         resize_gt_sources=resize_gt_sources, jobs=jobs, progress=progress)
    problems = fmt_problems + rep.problems
    dropped = fmt_dropped + rep.n_skipped
    if fmt_problems:  # the image problems were only gathered above: report everything together
        skipped = _raise_or_skip(str(path), problems, on_error, dropped)
    else:
        skipped = rep.skipped
    return CheckReport(rep.rows, problems, skipped, dropped)


def load_manifest(path: str | os.PathLike, data_root: str | os.PathLike, level: str = "exists",
                  convert: bool = False, on_error: str = "raise", jobs: int = 1) -> list[Row]:
    """Read and check a manifest at the start of a run (what the DataModules call); returns the usable rows."""
    return validate_manifest(path, data_root, level=level, convert=convert, on_error=on_error, jobs=jobs).rows


# --------------------------------------------------------------------------------------------------- counts
def task_counts(rows: Iterable[Row]) -> Counter:
    return Counter(r.task for r in rows)


def format_counts(splits: dict[str, Sequence[Row]], title: str = "") -> str:
    """A plain-text table: one line per split with its rows, per-task rows, no-reference and synthetic rows."""
    lines = [title] if title else []
    for split, rows in splits.items():
        counts = task_counts(rows)
        extra = []
        if (n := sum(not r.has_gt for r in rows)):
            extra.append(f"no reference: {n} rows")
        if (n := sum(r.synthetic for r in rows)):
            extra.append(f"synthesised LQ: {n} rows")
        per_task = ", ".join(f"{t}: {n}" for t, n in sorted(counts.items()))
        sources = ", ".join(sorted({r.source for r in rows}))
        lines.append(f"  {split:<16} {len(rows):>7} rows  [rows per task: {per_task}]  sources: {sources}"
                     + (f"  ({'; '.join(extra)})" if extra else ""))
    return "\n".join(lines)
