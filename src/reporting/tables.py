"""Per-task result tables (input vs restored PSNR/SSIM, the best classical baseline beside them when the records
carry one: :mod:`src.reporting.baseline_columns`), as Markdown and CSV."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from src.reporting.baseline_columns import add_baseline_columns, baseline_cell, baseline_columns, baseline_notes
from src.utils.csv_cells import write_rows

COLUMNS = ("task", "n", "psnr_in", "ssim_in", "psnr_out", "ssim_out")


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else None


def mean_per_task(records: list[dict], keys: Sequence[str]) -> list[dict]:
    """The mean of each of ``keys`` per task (in first-seen order) and over all records (row ``all``), with the
    count ``n``: the one per-task aggregation of the suite (training's test tables, ``src.eval``'s sets).

    Missing / ``None`` / NaN values are skipped; a mean over no value is ``None``. ``inf`` PSNRs (identical images)
    make the mean ``inf``, as in BasicSR.
    """
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["task"], []).append(r)
    rows = []
    for task, rs in [*groups.items(), ("all", records)]:
        if not rs:
            continue
        row: dict = {"task": task, "n": len(rs)}
        for key in keys:
            row[key] = _mean([r.get(key) for r in rs])
        rows.append(row)
    return add_baseline_columns(rows, records)


def per_task_table(records: list[dict]) -> list[dict]:
    """Mean metrics per task plus an 'all' row; records hold task, psnr_in, ssim_in, psnr_out, ssim_out."""
    return mean_per_task(records, COLUMNS[2:])


def to_markdown(rows: list[dict], title: str | None = None) -> str:
    extra = baseline_columns(rows)
    head = "| task | n | PSNR input | SSIM input | PSNR restored | SSIM restored |"
    head += "".join(f" {h} |" for _, h in extra)
    lines = [f"### {title}", ""] if title else []
    lines += [head, "|---|---:|---:|---:|---:|---:|" + "---:|" * len(extra)]
    for r in rows:
        lines.append(f"| {r['task']} | {r['n']} | {r['psnr_in']:.2f} | {r['ssim_in']:.4f} | "
                     f"{r['psnr_out']:.2f} | {r['ssim_out']:.4f} |"
                     + "".join(f" {baseline_cell(k, r)} |" for k, _ in extra))
    notes = baseline_notes(rows)
    return "\n".join(lines) + "\n" + ("\n" + "  \n".join(notes) + "\n" if notes else "")


def write_csv(rows: list[dict], path: str | Path) -> Path:
    return write_rows(path, rows, [*COLUMNS, *(k for k, _ in baseline_columns(rows))])
