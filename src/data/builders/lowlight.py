"""Low-light sets: LOL (paired) and the no-reference real-world sets MEF, NPE, DICM."""

from __future__ import annotations

from src.data.builders.common import (
    BuildContext,
    BuildResult,
    find_dir,
    layout_problem,
    list_images,
    pair_dirs,
    unpaired_rows,
)

LOL_LAYOUT = """\
published (Wei et al., 2018):     <root>/our485/{low,high}/<n>.png  -> lol_train (485)
                                  <root>/eval15/{low,high}/<n>.png  -> lol_test  (15)
DiffUIR's layout:                 <root>/train/{low,high}/<n>.png   -> lol_train
                                  <root>/test/{low,high}/<n>.png    -> lol_test
low and high images have the same name"""

NOREF_LAYOUT = """\
<root>/*.{{png,jpg,bmp}}  (or <root>/{name}/*)  -> {key}_test, no reference"""


def build_lol(ctx: BuildContext) -> BuildResult:
    """LOL (LOw-Light pairs, Wei et al., BMVC 2018): 485 training and 15 test pairs, task ``low_light``.

    Layouts (detected; the published one first)::

        <root>/our485/low/*.png, <root>/our485/high/*.png   -> split train
        <root>/eval15/low/*.png, <root>/eval15/high/*.png   -> split test
        <root>/train/{low,high}, <root>/test/{low,high}     (DiffUIR's copy)

    Low and high images are paired by identical file name (stem). Source ``LOL``.
    """
    res = BuildResult()
    for split, cands in (("train", ("our485", "train")), ("test", ("eval15", "test"))):
        for cand in cands:
            low, high = find_dir(ctx.root, f"{cand}/low"), find_dir(ctx.root, f"{cand}/high")
            if low and high:
                res.add(split, *pair_dirs(ctx, f"LOL {split}", low, high, "low_light", "LOL"))
                res.notes.append(f"{split}: {low.parent}")
                break
    if not res.found and not res.problems:
        res.problems.append(layout_problem(ctx, LOL_LAYOUT))
    return res


def _noref_builder(key: str, source: str, task: str):
    layout = NOREF_LAYOUT.format(name=source, key=key)

    def build(ctx: BuildContext) -> BuildResult:
        res = BuildResult()
        d = find_dir(ctx.root, source) if not list_images(ctx.root) else ctx.root
        if d is not None and (files := list_images(d)):
            res.add("test", unpaired_rows(ctx, files, task, source))
        else:
            res.problems.append(layout_problem(ctx, layout))
        return res

    build.__doc__ = (f"{source}: real-world {task.replace('_', '-')} images without reference (DiffUIR's zero-shot "
                     f"generalisation).\n\nLayout: every image directly in ``<root>`` (or in ``<root>/{source}``) "
                     f"-> split test, ``gt`` empty, source ``{source}``.")
    return build, layout


build_mef, MEF_LAYOUT = _noref_builder("mef", "MEF", "low_light")
build_npe, NPE_LAYOUT = _noref_builder("npe", "NPE", "low_light")
build_dicm, DICM_LAYOUT = _noref_builder("dicm", "DICM", "low_light")
