"""Clean image sets whose degraded versions are synthesised (Diff-Restorer's noise and JPEG training data).

Rows have an empty ``lq`` field: the LQ image is made on the fly from ``gt`` by the row's ``task`` (Gaussian noise
σ = 50, JPEG quality 10 by default; see ``src.data.datasets``). Every clean image gets one ``noise`` and one ``jpeg``
row.
"""

from __future__ import annotations

from src.data.builders.common import BuildContext, BuildResult, clean_rows, find_dir, layout_problem, list_images

SYNTH_TASKS = ("noise", "jpeg")

DIV2K_LAYOUT = """\
<root>/DIV2K_train_HR/0001.png ... 0800.png   -> div2k_train  (800 images)
<root>/DIV2K_valid_HR/0801.png ... 0900.png   -> div2k_valid  (100 images)
(either folder may be missing; <root> may also be one of these folders itself)"""

FLICKR2K_LAYOUT = """\
<root>/Flickr2K_HR/000001.png ... 002650.png  -> flickr2k_train  (2650 images)
(<root> may also be the Flickr2K_HR folder itself)"""


def build_div2k(ctx: BuildContext) -> BuildResult:
    """DIV2K (Agustsson & Timofte, 2017), high-resolution images only (the ``*_HR`` folders).

    Layout::

        <root>/DIV2K_train_HR/*.png   -> split train
        <root>/DIV2K_valid_HR/*.png   -> split valid (the source of the fixed synthetic test sets)

    Each image gives one ``noise`` and one ``jpeg`` row with an empty ``lq`` (synthesised), source ``DIV2K``.
    """
    res = BuildResult()
    for split, sub in (("train", "DIV2K_train_HR"), ("valid", "DIV2K_valid_HR")):
        d = ctx.root if ctx.root.name.lower() == sub.lower() else find_dir(ctx.root, sub)
        if d is not None:
            res.add(split, clean_rows(ctx, list_images(d), SYNTH_TASKS, "DIV2K"), notes=[f"{split}: {d}"])
    if not res.found:
        res.problems.append(layout_problem(ctx, DIV2K_LAYOUT))
    return res


def build_flickr2k(ctx: BuildContext) -> BuildResult:
    """Flickr2K (Lim et al., 2017), high-resolution images.

    Layout::

        <root>/Flickr2K_HR/*.png   -> split train

    Each image gives one ``noise`` and one ``jpeg`` row with an empty ``lq`` (synthesised), source ``Flickr2K``.
    """
    res = BuildResult()
    d = ctx.root if ctx.root.name.lower() == "flickr2k_hr" else find_dir(ctx.root, "Flickr2K_HR")
    if d is not None:
        res.add("train", clean_rows(ctx, list_images(d), SYNTH_TASKS, "Flickr2K"))
    else:
        res.problems.append(layout_problem(ctx, FLICKR2K_LAYOUT))
    return res
