"""Rain-streak sets: DiffUIR's merged deraining sets, Rain1400 (Diff-Restorer), Practical (real, no reference)."""

from __future__ import annotations

import os

from src.data.builders.common import (
    BuildContext,
    BuildResult,
    find_dir,
    layout_problem,
    list_images,
    pair_dirs,
    regex_key,
    unpaired_rows,
)

MERGED_TEST_SETS = ("Rain100H", "Rain100L", "Test100", "Test1200", "Test2800")

MERGED_LAYOUT = """\
DiffUIR's syn_rain (= Restormer's Deraining folder; Rain13K for training):
<root>/train/{input,target}/<name>          -> rain_merged_train (13712 pairs)
<root>/test/<set>/{input,target}/<name>     -> rain_merged_test_<set> for Rain100H, Rain100L, Test100, Test1200,
                                               Test2800 (4298 pairs in all; any other set folder is built too)
input and target names match (an original 'rain-001' / 'norain-001' naming is also accepted)"""

RAIN1400_LAYOUT = """\
Rain1400 (Fu et al., CVPR 2017, 'DDN'):
<root>/training/rainy_image/<n>_<k>.jpg + <root>/training/ground_truth/<n>.jpg  -> rain1400_train (12600)
<root>/testing/rainy_image/<n>_<k>.jpg  + <root>/testing/ground_truth/<n>.jpg   -> rain1400_test  (1400)
(14 rainy images <n>_1 ... <n>_14 per clean image <n>)"""

PRACTICAL_LAYOUT = """\
<root>/*.{png,jpg}  (Yang et al.'s 'Practical' real rainy images) -> practical_test, no reference"""

# 'rain-001' / 'norain-001' (original Rain100L/H naming) or identical names
RAIN_LQ_KEY = regex_key(r"(?:rain-)?(.+)")
RAIN_GT_KEY = regex_key(r"(?:no-?rain-)?(.+)")


def build_rain_merged(ctx: BuildContext) -> BuildResult:
    """DiffUIR's merged deraining data (the Rain13K training mix and its five test sets; MPRNet / Restormer layout).

    Layout::

        <root>/train/input/*, <root>/train/target/*            -> split train, source Rain13K
        <root>/test/<set>/input/*, <root>/test/<set>/target/*  -> split test_<set>, source <set>

    with ``<set>`` in Rain100H, Rain100L, Test100, Test1200, Test2800 (other set folders are built as well).
    Names pair when equal; the original Rain100 naming ``rain-001`` / ``norain-001`` is mapped to ``001``.
    Task ``rain``.
    """
    res = BuildResult()
    kw = dict(lq_key=RAIN_LQ_KEY, gt_key=RAIN_GT_KEY, lq_desc="<name> (or rain-<name>)",
              gt_desc="<name> (or norain-<name>)")
    inp, tgt = find_dir(ctx.root, "train/input"), find_dir(ctx.root, "train/target")
    if inp and tgt:
        res.add("train", *pair_dirs(ctx, "rain train", inp, tgt, "rain", "Rain13K", **kw))
    test = find_dir(ctx.root, "test")
    if test is not None:
        for entry in sorted(os.scandir(test), key=lambda e: e.name):
            inp, tgt = find_dir(test, f"{entry.name}/input"), find_dir(test, f"{entry.name}/target")
            if entry.is_dir() and inp and tgt:
                res.add(f"test_{entry.name}", *pair_dirs(ctx, f"rain test {entry.name}", inp, tgt, "rain", entry.name,
                                                          **kw))
        missing = [s for s in MERGED_TEST_SETS if f"test_{s}" not in res.found]
        if missing:
            res.notes.append("test sets not found: " + ", ".join(missing))
    if not res.found and not res.problems:
        res.problems.append(layout_problem(ctx, MERGED_LAYOUT))
    return res


def build_rain1400(ctx: BuildContext) -> BuildResult:
    """Rain1400 (Fu et al., CVPR 2017): 1000 clean images × 14 rain renderings (900 for training, 100 for testing).

    Layout::

        <root>/training/rainy_image/<n>_<k>.jpg, <root>/training/ground_truth/<n>.jpg   -> split train
        <root>/testing/rainy_image/<n>_<k>.jpg,  <root>/testing/ground_truth/<n>.jpg    -> split test

    A rainy image ``<n>_<k>`` pairs with the clean ``<n>``. Task ``rain``, source ``Rain1400``.
    """
    res = BuildResult()
    for split, cands in (("train", ("training", "train")), ("test", ("testing", "test"))):
        for cand in cands:
            rainy, gt = find_dir(ctx.root, f"{cand}/rainy_image"), find_dir(ctx.root, f"{cand}/ground_truth")
            if rainy and gt:
                res.add(split, *pair_dirs(ctx, f"Rain1400 {split}", rainy, gt, "rain", "Rain1400",
                                          lq_key=regex_key(r"(.+)_\d+"), many_to_one=True,
                                          lq_desc="<n>_<k> (e.g. 901_3.jpg)", gt_desc="<n> (e.g. 901.jpg)"))
                break
    if not res.found and not res.problems:
        res.problems.append(layout_problem(ctx, RAIN1400_LAYOUT))
    return res


def build_practical(ctx: BuildContext) -> BuildResult:
    """Practical (Yang et al., CVPR 2017): real rainy photographs, no reference (DiffUIR's zero-shot deraining).

    Layout: the images directly in ``<root>`` (or in ``<root>/Practical``) -> split test, task ``rain``, source
    ``Practical``.
    """
    res = BuildResult()
    d = ctx.root if list_images(ctx.root) else find_dir(ctx.root, "Practical")
    if d is not None and list_images(d):
        res.add("test", unpaired_rows(ctx, list_images(d), "rain", "Practical"))
    else:
        res.problems.append(layout_problem(ctx, PRACTICAL_LAYOUT))
    return res
