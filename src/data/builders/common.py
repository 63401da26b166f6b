"""Shared pieces of the dataset builders: folder lookup (case-insensitive), image listing, pairing by name."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from src.data.image_io import IMAGE_EXTENSIONS, is_image_file
from src.data.manifest_format import Problem, Row

KeyFn = Callable[[Path], "str | None"]


@dataclass
class BuildContext:
    """A builder's inputs: the dataset folder ``root`` and the ``data_root`` that manifest paths are relative to."""

    name: str
    root: Path
    data_root: Path

    def rel(self, path: Path) -> str:
        """``path`` relative to the data root, with ``/`` separators (error if it lies outside)."""
        try:
            return Path(os.path.abspath(path)).relative_to(self.data_root).as_posix()
        except ValueError:
            raise ValueError(f"{path} is not inside the data root {self.data_root}; pass --data-root "
                             "(paths in manifests are relative to it)") from None


@dataclass
class BuildResult:
    """A builder's output: rows per split, pairing problems, notes (layout detected, ignored files), and ``found``:
    every split whose folders were found, with or without rows (a split found empty is an error of the build)."""

    splits: dict[str, list[Row]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    found: set[str] = field(default_factory=set)

    def add(self, split: str, rows: list[Row], problems: Iterable[Problem] = (), notes: Iterable[str] = ()) -> None:
        self.found.add(split)
        if rows:
            self.splits.setdefault(split, []).extend(rows)
        self.problems.extend(problems)
        self.notes.extend(notes)


@dataclass(frozen=True)
class Builder:
    """A registered dataset builder: ``fn(ctx) -> BuildResult``, a one-line description, its layouts, and the
    splits every complete copy of the dataset has (``splits``: a missing one is an error of the build unless
    skipped; other splits are built when found)."""

    name: str
    fn: Callable[[BuildContext], BuildResult]
    description: str
    layout: str
    splits: tuple[str, ...] = ()


def find_dir(root: Path, *candidates: str) -> Path | None:
    """The first candidate sub-path (``/``-separated, matched case-insensitively per component) that is a folder."""
    for cand in candidates:
        cur: Path | None = root
        for part in [p for p in cand.split("/") if p]:
            cur = _child_dir(cur, part) if cur is not None else None
        if cur is not None and cur.is_dir():
            return cur
    return None


def _child_dir(parent: Path, name: str) -> Path | None:
    exact = parent / name
    if exact.is_dir():
        return exact
    if not parent.is_dir():
        return None
    low = name.lower()
    for entry in sorted(os.scandir(parent), key=lambda e: e.name):
        if entry.is_dir() and entry.name.lower() == low:
            return Path(entry.path)
    return None


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files (by extension, see :data:`IMAGE_EXTENSIONS`) in ``folder``, sorted by relative path."""
    if recursive:
        files = [Path(d) / f for d, _, names in os.walk(folder) for f in names]
    else:
        files = [Path(e.path) for e in os.scandir(folder) if e.is_file()]
    return sorted((f for f in files if is_image_file(f)), key=lambda p: p.relative_to(folder).as_posix())


def non_images(folder: Path) -> list[str]:
    """Visible files in ``folder`` that are not images (reported as notes, never read)."""
    return sorted(e.name for e in os.scandir(folder)
                  if e.is_file() and not e.name.startswith(".") and not e.name.lower().endswith(IMAGE_EXTENSIONS)
                  and e.name.lower() not in ("thumbs.db", "desktop.ini"))


def stem_key(path: Path) -> str:
    return path.stem


def regex_key(pattern: str, group: int = 1) -> KeyFn:
    """A key function: the ``group`` of ``pattern`` fully matching the file stem, None when it does not match."""
    rx = re.compile(pattern)

    def key(path: Path) -> str | None:
        m = rx.fullmatch(path.stem)
        return m.group(group) if m else None

    key.pattern = pattern  # type: ignore[attr-defined]
    return key


def pair_files(ctx: BuildContext, where: str, lq_files: Sequence[Path], gt_files: Sequence[Path], task: str,
               source: str, lq_key: KeyFn = stem_key, gt_key: KeyFn = stem_key, many_to_one: bool = False,
               lq_desc: str = "the LQ naming scheme", gt_desc: str = "the GT naming scheme",
               ) -> tuple[list[Row], list[Problem], list[str]]:
    """Pair LQ and GT files by key (the file name mapped by ``lq_key`` / ``gt_key``); rows in LQ order.

    Problems: a file whose name does not fit the naming scheme (key None), two GT files with the same key
    (``1.png`` and ``1.jpg``), two LQ files with the same key when pairs are one-to-one, an LQ without a GT and,
    for one-to-one sets, a GT without an LQ (both "unpaired"). For ``many_to_one`` sets (RESIDE OTS: 35 hazy images
    per clear one), references nobody uses are only counted in a note.
    """
    problems: list[Problem] = []
    notes: list[str] = []
    groups: dict[str, list[Path]] = {}
    for g in gt_files:
        k = gt_key(g)
        if k is None:
            problems.append(Problem(where, str(g), "GT file name does not fit the naming scheme", gt_desc, "name"))
        else:
            groups.setdefault(k, []).append(g)
    gt_by_key = {k: v[0] for k, v in groups.items() if len(v) == 1}
    ambiguous = {k for k, v in groups.items() if len(v) > 1}
    for k in sorted(ambiguous):  # which one is the reference? neither is used
        problems.append(Problem(where, str(groups[k][1]), f"second GT image for key {k!r} (also: "
                                + ", ".join(p.name for p in groups[k] if p != groups[k][1]) + ")",
                                "one GT image per name", "ambiguous"))
    rows: list[Row] = []
    used: set[str] = set()
    seen_lq: dict[str, Path] = {}
    gt_dirs = sorted({str(g.parent) for g in gt_files}) or ["(no GT folder)"]
    for f in lq_files:
        k = lq_key(f)
        if k is None:
            problems.append(Problem(where, str(f), "LQ file name does not fit the naming scheme", lq_desc, "name"))
            continue
        if not many_to_one and k in seen_lq:
            problems.append(Problem(where, str(f), f"second LQ image for key {k!r} (first: {seen_lq[k].name})",
                                    "one LQ image per name", "ambiguous"))
            continue
        seen_lq[k] = f
        if k in ambiguous:
            continue
        g = gt_by_key.get(k)
        if g is None:
            problems.append(Problem(where, str(f), f"unpaired LQ image: no GT image named {k!r} in "
                                    + ", ".join(gt_dirs), f"a GT image for every LQ image ({gt_desc})", "unpaired"))
            continue
        used.add(k)
        rows.append(Row(ctx.rel(f), ctx.rel(g), task, source))
    orphans = [g for k, g in gt_by_key.items() if k not in used]
    if orphans and not many_to_one:
        for g in orphans:
            problems.append(Problem(where, str(g), f"unpaired GT image: no LQ image for key {gt_key(g)!r}",
                                    f"an LQ image for every GT image ({lq_desc})", "unpaired"))
    elif orphans:
        notes.append(f"{where}: {len(orphans)} of {len(gt_by_key)} reference images have no degraded image "
                     "(not used)")
    return rows, problems, notes


def pair_dirs(ctx: BuildContext, where: str, lq_dir: Path, gt_dir: Path, task: str, source: str,
              recursive: bool = False, **kw) -> tuple[list[Row], list[Problem], list[str]]:
    """:func:`pair_files` over the images of two folders; non-image files are noted, not read."""
    notes = [f"{where}: ignored non-image files in {d}: {', '.join(n[:5])}{' ...' if len(n) > 5 else ''}"
             for d in (lq_dir, gt_dir) if (n := non_images(d))]
    rows, problems, more = pair_files(ctx, where, list_images(lq_dir, recursive), list_images(gt_dir, recursive),
                                      task, source, **kw)
    return rows, problems, notes + more


def unpaired_rows(ctx: BuildContext, files: Iterable[Path], task: str, source: str) -> list[Row]:
    """No-reference rows (empty ``gt``)."""
    return [Row(ctx.rel(f), None, task, source) for f in files]


def clean_rows(ctx: BuildContext, files: Iterable[Path], tasks: Sequence[str], source: str) -> list[Row]:
    """Clean-image rows (empty ``lq``: the LQ is synthesised on the fly), one per image and task."""
    return [Row(None, ctx.rel(f), t, source) for t in tasks for f in files]


def layout_problem(ctx: BuildContext, layout: str) -> Problem:
    return Problem(ctx.name, str(ctx.root), "no known layout found", "the layout:\n" + layout, "layout")
