"""Snow sets: Snow100K (Liu et al., TIP 2018: DesnowNet) and RealSnow (real snowy images)."""

from __future__ import annotations

import os
from pathlib import Path

from src.data.builders.common import (
    BuildContext,
    BuildResult,
    find_dir,
    layout_problem,
    list_images,
    pair_dirs,
    unpaired_rows,
)

SNOW100K_LAYOUT = """\
DiffUIR's layout:   <root>/train/{synthetic,gt}/<name>.jpg                -> snow100k_train (50000)
                    <root>/test/Snow100K-{S,M,L}/{synthetic,gt}/<name>.jpg -> snow100k_test_{S,M,L}
published archives: <root>/Snow100K-training/all/{synthetic,gt}  (mask/ ignored)
                    .../Snow100K-{S,M,L}/{synthetic,gt}  found at any depth (the test archive nests them)
                    .../realistic/*.jpg  (1329 real snowy images, no reference) -> snow100k_realistic"""

REALSNOW_LAYOUT = """\
<root>/[test/]{input,LQ,snow}/*  [+ <root>/[test/]{gt,GT,target,clean}/* with the same names]  -> realsnow_test
or the images directly in <root> (no reference)"""

_MAX_DEPTH = 7
_IMAGE_FOLDERS = {"synthetic", "gt", "mask", "realistic"}


def _find_named_dirs(root: Path, names: set[str]) -> dict[str, Path]:
    """Folders named (case-insensitively) one of ``names`` under ``root``, shallowest first, at most 7 levels deep."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, _ in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        if depth >= _MAX_DEPTH:
            dirnames[:] = []
        dirnames.sort()
        for d in dirnames:
            if d.lower() in names and d.lower() not in found:
                found[d.lower()] = Path(dirpath) / d
        dirnames[:] = [d for d in dirnames if d.lower() not in _IMAGE_FOLDERS]  # do not walk 50000-image folders
    return found


def build_snow100k(ctx: BuildContext) -> BuildResult:
    """Snow100K: 50000 synthetic training pairs, test sets Snow100K-S/M/L (small / medium / large flakes) and
    1329 realistic snowy images without reference; task ``snow``.

    Layouts (detected)::

        <root>/train/{synthetic,gt}                 (DiffUIR)   or <root>/Snow100K-training/all/{synthetic,gt}
        <root>/test/Snow100K-S/{synthetic,gt}       (DiffUIR)   or the same folders at any depth below <root>
        <root>/.../realistic/*                      (no reference)

    Pairs have identical names in ``synthetic`` and ``gt``; the published ``mask`` folders are ignored. Splits
    ``train`` (source ``Snow100K``), ``test_S`` / ``test_M`` / ``test_L`` (``Snow100K-S`` ...), ``realistic``
    (``Snow100K-realistic``).
    """
    res = BuildResult()
    for cand in ("train", "Snow100K-training/all", "all", "Snow100K-training"):
        syn, gt = find_dir(ctx.root, f"{cand}/synthetic"), find_dir(ctx.root, f"{cand}/gt")
        if syn and gt:
            res.add("train", *pair_dirs(ctx, "Snow100K train", syn, gt, "snow", "Snow100K"))
            res.notes.append(f"train: {syn.parent}")
            break
    found = _find_named_dirs(ctx.root, {"snow100k-s", "snow100k-m", "snow100k-l", "realistic"})
    for size in ("S", "M", "L"):
        d = found.get(f"snow100k-{size.lower()}")
        syn, gt = (find_dir(d, "synthetic"), find_dir(d, "gt")) if d else (None, None)
        if syn and gt:
            res.add(f"test_{size}", *pair_dirs(ctx, f"Snow100K-{size}", syn, gt, "snow", f"Snow100K-{size}"))
            res.notes.append(f"test_{size}: {d}")
    real = found.get("realistic")
    if real is not None:
        res.add("realistic", unpaired_rows(ctx, list_images(real), "snow", "Snow100K-realistic"),
                notes=[f"realistic: {real}"])
    if not res.found and not res.problems:
        res.problems.append(layout_problem(ctx, SNOW100K_LAYOUT))
    return res


def build_realsnow(ctx: BuildContext) -> BuildResult:
    """RealSnow: real snowy photographs, Diff-Restorer's real-world desnowing test; task ``snow``.

    Layout assumption (there is no single published tree): the snowy images in ``<root>/[test/]<lq>`` with
    ``<lq>`` one of ``input``, ``LQ``, ``snow``, ``degraded``, and, if a reference folder ``gt`` / ``GT`` /
    ``target`` / ``clean`` sits beside it, pairs by identical name; otherwise (the issue's setting: no reference)
    every image directly in ``<root>`` is a no-reference row. Split test, source ``RealSnow``.
    """
    res = BuildResult()
    for base in ("test", "testing", ""):
        lq = find_dir(ctx.root, *(f"{base}/{n}" for n in ("input", "LQ", "snow", "degraded")))
        if lq is None:
            continue
        gt = find_dir(lq.parent, "gt", "target", "clean")
        if gt is not None:
            res.add("test", *pair_dirs(ctx, "RealSnow", lq, gt, "snow", "RealSnow"))
        else:
            res.add("test", unpaired_rows(ctx, list_images(lq), "snow", "RealSnow"))
        return res
    if list_images(ctx.root):
        res.add("test", unpaired_rows(ctx, list_images(ctx.root), "snow", "RealSnow"))
    else:
        res.problems.append(layout_problem(ctx, REALSNOW_LAYOUT))
    return res
