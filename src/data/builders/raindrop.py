"""Raindrop (Qian et al., CVPR 2018, 'Attentive GAN'): adherent raindrops on the lens / glass."""

from __future__ import annotations

from src.data.builders.common import BuildContext, BuildResult, find_dir, layout_problem, pair_dirs, regex_key

RAINDROP_LAYOUT = """\
<root>/train/data/<n>_rain.png  + <root>/train/gt/<n>_clean.png   -> raindrop_train  (861)
<root>/test_a/data/<n>_rain.png + <root>/test_a/gt/<n>_clean.png  -> raindrop_test_a (58)
<root>/test_b/data/<n>_rain.png + <root>/test_b/gt/<n>_clean.png  -> raindrop_test_b (249)"""


def build_raindrop(ctx: BuildContext) -> BuildResult:
    """Raindrop: pairs ``<split>/data/<n>_rain.<ext>`` with ``<split>/gt/<n>_clean.<ext>``; task ``raindrop``.

    Layout::

        <root>/train/{data,gt}    -> split train
        <root>/test_a/{data,gt}   -> split test_a (the usual test set)
        <root>/test_b/{data,gt}   -> split test_b

    Source ``Raindrop``. The suffixes ``_rain`` / ``_clean`` are required (an image without one is reported).
    """
    res = BuildResult()
    for split in ("train", "test_a", "test_b"):
        data, gt = find_dir(ctx.root, f"{split}/data"), find_dir(ctx.root, f"{split}/gt")
        if data and gt:
            res.add(split, *pair_dirs(ctx, f"Raindrop {split}", data, gt, "raindrop", "Raindrop",
                                      lq_key=regex_key(r"(.+)_rain"), gt_key=regex_key(r"(.+)_clean"),
                                      lq_desc="<n>_rain.<ext>", gt_desc="<n>_clean.<ext>"))
    if not res.found and not res.problems:
        res.problems.append(layout_problem(ctx, RAINDROP_LAYOUT))
    return res
