"""The classical-baseline columns of the suite's per-task tables (issue 17: a quality claim stands beside a
baseline). Per image, the evaluation records the best classical baseline's PSNR/SSIM on Y and its name
(:func:`src.baselines.baseline_scores`); :func:`add_baseline_columns` turns those into per-task columns (mean
best-baseline PSNR/SSIM, the model's gap to it in dB on the same images, which methods won), and
:func:`baseline_columns` / :func:`baseline_cell` / :func:`baseline_notes` let any table printer show them.
"""

from __future__ import annotations

import math
from collections import Counter

from src.baselines import BASELINES, all_skipped_notes

BASELINE_HEADERS = {"psnr_base": "PSNR best baseline", "ssim_base": "SSIM best baseline",
                    "gap_db": "model − baseline (dB)", "baseline": "best baseline (images)"}
BASELINE_KEYS = tuple(BASELINE_HEADERS)
BEST_NOTE = ("best baseline: per image, the classical method of the task with the highest PSNR-Y against the GT "
             "(src.baselines; σ estimated where not known), run live on the same inputs")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _winners(labels: list[str]) -> str:
    counts = Counter(labels)
    return ", ".join(label if n == 1 and len(counts) == 1 else f"{label} ×{n}" for label, n in counts.most_common())


def add_baseline_columns(rows: list[dict], records: list[dict], model_key: str = "psnr_out") -> list[dict]:
    """Fill ``psnr_base``, ``ssim_base``, ``gap_db`` (mean ``model_key`` − ``psnr_base`` over the images that have
    a baseline) and ``baseline`` (the winning methods, with counts) of each per-task row (``all``: every image)
    from per-image ``records``; rows of tasks without a baseline are left as they are. Returns ``rows``."""
    for row in rows:
        rs = [r for r in records if r.get("psnr_base") is not None and row["task"] in ("all", r["task"])]
        if not rs:
            continue
        row["psnr_base"] = _mean([r["psnr_base"] for r in rs])
        row["ssim_base"] = _mean([r["ssim_base"] for r in rs])
        model = [r.get(model_key) for r in rs]
        if all(isinstance(v, (int, float)) for v in model):
            row["gap_db"] = _mean(model) - row["psnr_base"]
        row["baseline"] = _winners([r["baseline"] for r in rs]) if row["task"] != "all" else "per task"
    return rows


def baseline_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """(key, header) of the baseline columns some row has values for (none when no row has a baseline)."""
    return [(k, h) for k, h in BASELINE_HEADERS.items() if any(r.get(k) is not None for r in rows)]


def baseline_cell(key: str, row: dict) -> str:
    """A baseline column's cell: PSNR with 2 decimals, SSIM with 4, the gap signed, the methods as text."""
    value = row.get(key)
    if value is None:
        return ""
    if key == "baseline":
        return str(value)
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return {"psnr_base": f"{value:.2f}", "ssim_base": f"{value:.4f}", "gap_db": f"{value:+.2f}"}[key]


def baseline_notes(rows: list[dict]) -> list[str]:
    """What the baseline columns mean, and which baselines could not run here (with the install command)."""
    if not baseline_columns(rows):
        return []
    tasks = [r["task"] for r in rows if r["task"] in BASELINES]
    return [BEST_NOTE, *all_skipped_notes(tasks)]
