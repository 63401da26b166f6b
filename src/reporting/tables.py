"""Per-task result tables (input vs restored PSNR/SSIM, the best classical baseline beside them when the records
carry one: :mod:`src.reporting.baseline_columns`), as Markdown and CSV."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from src.reporting.baseline_columns import add_baseline_columns, baseline_cell, baseline_columns, baseline_notes

COLUMNS = ("task", "n", "psnr_in", "ssim_in", "psnr_out", "ssim_out")


def per_task_table(records: list[dict]) -> list[dict]:
    """Mean metrics per task plus an 'all' row; records hold task, psnr_in, ssim_in, psnr_out, ssim_out."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["task"]].append(r)
    rows = []
    for task, rs in [*groups.items(), ("all", records)]:
        if not rs:
            continue
        row = {"task": task, "n": len(rs)}
        for key in COLUMNS[2:]:
            row[key] = sum(r[key] for r in rs) / len(rs)
        rows.append(row)
    return add_baseline_columns(rows, records)


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, *(k for k, _ in baseline_columns(rows))])
        writer.writeheader()
        writer.writerows(rows)
    return path
