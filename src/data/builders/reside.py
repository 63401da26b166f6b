"""RESIDE (Li et al., TIP 2019) dehazing sets: OTS / ITS for training, SOTS for testing, RTTS (real, no reference).

Hazy file names carry the clear image's id and the haze parameters, ``<id>_<A>_<beta>`` (OTS / SOTS-outdoor:
``0001_0.8_0.2.jpg``; ITS: ``1_1_0.90179.png``; SOTS-indoor: ``1400_1.png``), and pair with the clear image
``<id>.<ext>``: the key of a hazy image is the text before its first ``_``. Many hazy images share one clear image
(OTS: 35 each), so clear images with no hazy version are only counted in a note.
"""

from __future__ import annotations

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

HAZY_KEY = regex_key(r"([^_]+)_.+")
CLEAR_KEY = regex_key(r"([^_]+)")
HAZY_DESC = "<id>_<params>.<ext> (e.g. 0001_0.8_0.2.jpg)"
CLEAR_DESC = "<id>.<ext> (e.g. 0001.jpg)"

RESIDE_LAYOUT = """\
<root>/OTS_ALPHA/haze/OTS/<id>_<A>_<beta>.jpg + <root>/OTS_ALPHA/clear/clear_images/<id>.jpg -> reside_ots_train
   (also <root>/OTS/{hazy,clear})
<root>/ITS/{hazy,clear}  (or ITS_v2)                                -> reside_its_train
<root>/SOTS/outdoor/{hazy,gt}   (hazy <id>_<A>_<beta>.jpg, gt <id>.png) -> reside_sots_outdoor (500)
<root>/SOTS/indoor/{hazy,gt}                                         -> reside_sots_indoor (500)
<root>/RTTS/JPEGImages/*.png  (real hazy, no reference)             -> reside_rtts (4322)
any subset of these parts may be present"""

RTTS_LAYOUT = """\
<root>/JPEGImages/*.png (the published RTTS folder; Annotations/ is ignored), or <root>/*.png  -> rtts_test"""


def _pair(ctx: BuildContext, res: BuildResult, split: str, hazy, clear, source: str) -> None:
    res.add(split, *pair_dirs(ctx, f"RESIDE {split}", hazy, clear, "haze", source, lq_key=HAZY_KEY,
                              gt_key=CLEAR_KEY, many_to_one=True, lq_desc=HAZY_DESC, gt_desc=CLEAR_DESC))
    res.notes.append(f"{split}: {hazy} + {clear}")


def _rtts_dir(root):
    d = find_dir(root, "JPEGImages", "RTTS/JPEGImages", "RTTS")
    return d if d is not None and list_images(d) else None


def build_reside(ctx: BuildContext) -> BuildResult:
    """RESIDE: every part found under ``<root>`` (see :data:`RESIDE_LAYOUT`), task ``haze``.

    Splits and sources: ``ots_train`` (``RESIDE-OTS``), ``its_train`` (``RESIDE-ITS``), ``sots_outdoor``
    (``SOTS-outdoor``), ``sots_indoor`` (``SOTS-indoor``), ``rtts`` (``RTTS``, no reference). DiffUIR trains on OTS
    and tests on SOTS-outdoor; Diff-Restorer trains on RESIDE and tests on RTTS.
    """
    res = BuildResult()
    hazy = find_dir(ctx.root, "OTS_ALPHA/haze/OTS", "OTS_ALPHA/haze", "OTS/hazy", "OTS/haze")
    clear = find_dir(ctx.root, "OTS_ALPHA/clear/clear_images", "OTS_ALPHA/clear", "OTS/clear", "OTS/gt")
    if hazy and clear:
        _pair(ctx, res, "ots_train", hazy, clear, "RESIDE-OTS")
    hazy, clear = find_dir(ctx.root, "ITS/hazy", "ITS_v2/hazy"), find_dir(ctx.root, "ITS/clear", "ITS_v2/clear")
    if hazy and clear:
        _pair(ctx, res, "its_train", hazy, clear, "RESIDE-ITS")
    for part, source in (("outdoor", "SOTS-outdoor"), ("indoor", "SOTS-indoor")):
        hazy = find_dir(ctx.root, f"SOTS/{part}/hazy")
        clear = find_dir(ctx.root, f"SOTS/{part}/gt", f"SOTS/{part}/clear")
        if hazy and clear:
            _pair(ctx, res, f"sots_{part}", hazy, clear, source)
    rtts = find_dir(ctx.root, "RTTS/JPEGImages", "RTTS")
    if rtts is not None:
        res.add("rtts", unpaired_rows(ctx, list_images(rtts), "haze", "RTTS"), notes=[f"rtts: {rtts}"])
    if not res.found and not res.problems:
        res.problems.append(layout_problem(ctx, RESIDE_LAYOUT))
    return res


def build_rtts(ctx: BuildContext) -> BuildResult:
    """RTTS (RESIDE's Real-world Task-driven Testing Set): 4322 real hazy images, no reference; task ``haze``.

    Layout: ``<root>/JPEGImages/*.png`` (the published folder; ``Annotations/`` is ignored) or images directly in
    ``<root>`` -> split test, source ``RTTS``.
    """
    res = BuildResult()
    d = ctx.root if list_images(ctx.root) else _rtts_dir(ctx.root)
    if d is not None:
        res.add("test", unpaired_rows(ctx, list_images(d), "haze", "RTTS"))
    else:
        res.problems.append(layout_problem(ctx, RTTS_LAYOUT))
    return res
