"""Motion-blur sets: GoPro (training and test), and DiffUIR's zero-shot sets HIDE, RealBlur-J, RealBlur-R."""

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
    pair_files,
    regex_key,
)
from src.data.manifest_format import Problem, Row

GOPRO_LAYOUT = """\
published (GOPRO_Large, Nah et al. 2017): <root>/train/<scene>/{blur,sharp}/<frame>.png -> gopro_train (2103)
                                          <root>/test/<scene>/{blur,sharp}/<frame>.png  -> gopro_test  (1111)
DiffUIR's Deblur folder (Restormer's):    <root>/train/{input,target}, <root>/test/GoPro/{input,target}"""

HIDE_LAYOUT = """\
published (HIDE_dataset, Shen et al. 2019):
    <root>/test/{test-close-ups,test-long-shot}/<name>.png + <root>/GT/<name>.png -> hide_test (2025)
    <root>/train/<name>.png + <root>/GT/<name>.png                               -> hide_train
Restormer's copy: <root>/{input,target}/<name>.png                                -> hide_test"""

REALBLUR_LAYOUT = """\
published (Rim et al., ECCV 2020):
    <root>/RealBlur_{v}_{{train,test}}_list.txt, lines '<gt path> <blur path>' relative to <root>
        -> realblur_{lv}_{{train,test}} (test: 980 pairs)
without the lists:
    <root>/RealBlur-{v}_ECC_IMCORR_centroid_itensity_ref/scene*/{{blur,gt}}/{{blur,gt}}_<n>.png -> realblur_{lv}_all
Restormer's copy:
    <root>/{{input,target}}/* (or <root>/test/RealBlur_{v}/{{input,target}}) -> realblur_{lv}_test"""


def _scene_pairs(ctx: BuildContext, res: BuildResult, split: str, base: Path) -> None:
    """GOPRO_Large: ``<base>/<scene>/blur/<frame>`` with ``<base>/<scene>/sharp/<frame>``, keyed by scene/frame."""
    lq, gt = [], []
    for scene in sorted(e.name for e in os.scandir(base) if e.is_dir()):
        b, s = find_dir(base / scene, "blur"), find_dir(base / scene, "sharp")
        if b is None and s is None:
            continue
        if b is None or s is None:
            res.problems.append(Problem(f"GoPro {split}", str(base / scene), "scene folder lacks blur/ or sharp/",
                                        "<scene>/blur and <scene>/sharp", "layout"))
            continue
        lq += list_images(b)
        gt += list_images(s)

    def key(p: Path) -> str:
        return f"{p.parent.parent.name}/{p.stem}"

    res.add(split, *pair_files(ctx, f"GoPro {split}", lq, gt, "blur", "GoPro", lq_key=key, gt_key=key,
                               lq_desc="<scene>/blur/<frame>", gt_desc="<scene>/sharp/<frame>"))


def build_gopro(ctx: BuildContext) -> BuildResult:
    """GoPro (Nah et al., CVPR 2017): 2103 training and 1111 test pairs of dynamic-scene blur; task ``blur``.

    Layouts (detected)::

        <root>/{train,test}/<scene>/blur/<frame>.png, .../<scene>/sharp/<frame>.png  (GOPRO_Large; blur_gamma/
                                                                                    is ignored)
        <root>/train/{input,target}, <root>/test/GoPro/{input,target}            (DiffUIR's Deblur folder)

    Pairs: same scene and frame name (published) or identical names (DiffUIR). Source ``GoPro``.
    """
    res = BuildResult()
    for split in ("train", "test"):
        inp = find_dir(ctx.root, f"{split}/input", f"{split}/GoPro/input")
        tgt = find_dir(ctx.root, f"{split}/target", f"{split}/GoPro/target")
        if inp and tgt:
            res.add(split, *pair_dirs(ctx, f"GoPro {split}", inp, tgt, "blur", "GoPro"))
            res.notes.append(f"{split}: {inp.parent}")
        elif (base := find_dir(ctx.root, split)) is not None:
            _scene_pairs(ctx, res, split, base)
    if not res.found and not res.problems:
        res.problems.append(layout_problem(ctx, GOPRO_LAYOUT))
    return res


def build_hide(ctx: BuildContext) -> BuildResult:
    """HIDE (Shen et al., ICCV 2019): human-aware motion deblurring; DiffUIR tests zero-shot on its 2025 test pairs.

    Layouts::

        <root>/test/test-close-ups/*.png, <root>/test/test-long-shot/*.png, <root>/GT/*.png   (published)
        <root>/{input,target}/*.png                                                          (Restormer's copy)

    A blurred image pairs with the ``GT`` image of the same name (GT holds the references of train and test, so
    references without a test image are only noted). Task ``blur``, source ``HIDE``.
    """
    res = BuildResult()
    inp, tgt = find_dir(ctx.root, "input", "test/HIDE/input"), find_dir(ctx.root, "target", "test/HIDE/target")
    gt_dir = find_dir(ctx.root, "GT")
    if inp and tgt:
        res.add("test", *pair_dirs(ctx, "HIDE test", inp, tgt, "blur", "HIDE"))
    elif gt_dir is not None:
        gt = list_images(gt_dir)
        for split in ("test", "train"):
            d = find_dir(ctx.root, split)
            if d is not None and (lq := list_images(d, recursive=True)):
                res.add(split, *pair_files(ctx, f"HIDE {split}", lq, gt, "blur", "HIDE", many_to_one=True,
                                           lq_desc="<name>.png", gt_desc="GT/<name>.png"))
    if not res.found and not res.problems:
        res.problems.append(layout_problem(ctx, HIDE_LAYOUT))
    return res


def _realblur_builder(variant: str):
    lv = variant.lower()
    layout = REALBLUR_LAYOUT.format(v=variant, lv=lv)
    source = f"RealBlur-{variant}"

    def build(ctx: BuildContext) -> BuildResult:
        res = BuildResult()
        lists = {split: ctx.root / f"RealBlur_{variant}_{split}_list.txt" for split in ("train", "test")}
        if any(p.is_file() for p in lists.values()):
            for split, path in lists.items():
                if path.is_file():
                    _read_list(ctx, res, split, path, source)
            return res
        inp = find_dir(ctx.root, "input", f"test/RealBlur_{variant}/input")
        tgt = find_dir(ctx.root, "target", f"test/RealBlur_{variant}/target")
        if inp and tgt:
            res.add("test", *pair_dirs(ctx, f"{source} test", inp, tgt, "blur", source))
            return res
        base = find_dir(ctx.root, f"RealBlur-{variant}_ECC_IMCORR_centroid_itensity_ref")
        if base is not None:
            lq = [f for f in list_images(base, recursive=True) if f.parent.name.lower() == "blur"]
            gt = [f for f in list_images(base, recursive=True) if f.parent.name.lower() == "gt"]
            res.add("all", *pair_files(ctx, f"{source} all", lq, gt, "blur", source,
                                       lq_key=_scene_key(r"blur_(\d+)"), gt_key=_scene_key(r"gt_(\d+)"),
                                       lq_desc="scene*/blur/blur_<n>.png", gt_desc="scene*/gt/gt_<n>.png"))
            res.notes.append("no RealBlur_*_list.txt found: every scene put in split 'all'")
        if not res.found and not res.problems:
            res.problems.append(layout_problem(ctx, layout))
        return res

    build.__doc__ = (f"RealBlur-{variant} (Rim et al., ECCV 2020), real camera-shake blur; DiffUIR tests zero-shot "
                     f"on its 980 test pairs. Task ``blur``, source ``{source}``.\n\nLayouts::\n\n"
                     + "\n".join("    " + line for line in layout.splitlines()))
    return build, layout


def _scene_key(pattern: str):
    stem = regex_key(pattern)

    def key(p: Path) -> str | None:
        k = stem(p)
        return None if k is None else f"{p.parent.parent.name}/{k}"

    return key


def _read_list(ctx: BuildContext, res: BuildResult, split: str, path: Path, source: str) -> None:
    """A RealBlur list file: one pair per line, ``<gt path> <blurred path>``, relative to the RealBlur folder."""
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            res.problems.append(Problem(f"{path.name} line {lineno}", str(path), f"{len(parts)} fields",
                                        "'<gt path> <blur path>'", "format"))
            continue
        gt, lq = (ctx.root / p for p in parts)
        rows.append(Row(ctx.rel(lq), ctx.rel(gt), "blur", source))
    res.add(split, rows)
    res.notes.append(f"{split}: {path.name}")


build_realblur_j, REALBLUR_J_LAYOUT = _realblur_builder("J")
build_realblur_r, REALBLUR_R_LAYOUT = _realblur_builder("R")
