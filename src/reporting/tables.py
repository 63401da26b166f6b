"""Per-task result tables (input vs restored PSNR/SSIM), as Markdown and CSV."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from src.utils.csv_cells import csv_cell

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
    return rows


def to_markdown(rows: list[dict], title: str | None = None) -> str:
    head = "| task | n | PSNR input | SSIM input | PSNR restored | SSIM restored |"
    lines = [f"### {title}", ""] if title else []
    lines += [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['n']} | {r['psnr_in']:.2f} | {r['ssim_in']:.4f} | "
                     f"{r['psnr_out']:.2f} | {r['ssim_out']:.4f} |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return path
