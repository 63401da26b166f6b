"""Evaluation results as tables (CSV, Markdown) beside the paper's numbers, and a report page (Markdown + HTML)
that shows every set's table and its LQ | restored | GT grids.

A table cell is one of: a number; ``not computed`` (the metric's weights are absent or it failed: the reason,
with the file it needs and where to put it, is printed under the table and in the CSV cell); empty (the metric
does not apply, e.g. a full-reference metric on a set without ground truth); ``–`` in a paper column (the
paper reports no number for that task and metric).
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from src.metrics.registry import METRICS

INPUT_COLUMNS = ("psnr_in", "ssim_in")  # fidelity of the degraded input itself (Y), a baseline for the row
INPUT_LABELS = {"psnr_in": "PSNR input (Y)", "ssim_in": "SSIM input (Y)"}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else None


def aggregate(records: list[dict], metrics: list[str]) -> list[dict]:
    """Mean of each metric per task (in first-seen order) and over all images (row ``all``).

    Missing / ``None`` values are skipped; a mean over no value is ``None``. ``inf`` PSNRs (identical images)
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
        for key in (*INPUT_COLUMNS, *metrics):
            row[key] = _mean([r.get(key) for r in rs])
        rows.append(row)
    return rows


@dataclass
class SetResult:
    """One evaluated set: its aggregated rows (with paper columns), grids and notes."""

    name: str
    rows: list[dict]
    metrics: list[str]
    paper_metrics: list[str] = field(default_factory=list)
    grids: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    title: str = ""


def add_paper_columns(rows: list[dict], metrics: list[str], lookup: Callable[[str, str], object | None]) -> list[str]:
    """Fill ``paper_<metric>`` and ``paper_source`` of each row from ``lookup(task, metric)`` (a
    :class:`~src.reporting.paper_tables.PaperValue` or None); returns the metrics that got any paper number.

    The ``all`` row gets none: the paper's averages are over its own sets, not over this mix of tasks.
    """
    with_paper = []
    for row in rows:
        sources = []
        for metric in metrics:
            found = lookup(row["task"], metric) if row["task"] != "all" else None
            row[f"paper_{metric}"] = found.value if found is not None else None  # as printed, e.g. "0.880"
            if found is not None:
                sources.append(found.source)
                if metric not in with_paper:
                    with_paper.append(metric)
        row["paper_source"] = "; ".join(dict.fromkeys(sources))
    return [m for m in metrics if m in with_paper]


def _fmt(metric: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    digits = METRICS[metric].digits if metric in METRICS else (2 if metric == "psnr_in" else 4)
    return f"{value:.{digits}f}"


def table_columns(result: SetResult) -> list[tuple[str, str]]:
    """(key, header) of every column of a set table, paper columns right after their metric."""
    cols = [("task", "task"), ("n", "n")]
    if any(r.get("psnr_in") is not None for r in result.rows):
        cols += [(k, INPUT_LABELS[k]) for k in INPUT_COLUMNS]
    for m in result.metrics:
        cols.append((m, f"{METRICS[m].label} {METRICS[m].arrow}"))
        if m in result.paper_metrics:
            cols.append((f"paper_{m}", "paper"))
    if result.paper_metrics:
        cols.append(("paper_source", "paper source"))
    return cols


def _cell(key: str, row: dict, unavailable: dict, markers: dict[str, str] | None = None) -> str:
    if key in ("task", "n", "paper_source"):
        return str(row.get(key, ""))
    if key in unavailable:
        return "not computed" + (markers or {}).get(key, "") if markers is not None else unavailable[key].cell()
    if key.startswith("paper_"):
        value = row.get(key)
        return "–" if value is None else str(value)
    return _fmt(key, row.get(key))


def _markers(result: SetResult, unavailable: dict) -> dict[str, str]:
    names = [m for m in result.metrics if m in unavailable]
    return {m: f"[{i}]" for i, m in enumerate(names, start=1)}


def set_table_markdown(result: SetResult, unavailable: dict) -> str:
    """The set's table in Markdown, footnotes saying what each ``not computed`` needs."""
    cols = table_columns(result)
    markers = _markers(result, unavailable)
    lines = [f"### {result.title or result.name}", ""] if (result.title or result.name) else []
    lines += ["| " + " | ".join(h for _, h in cols) + " |",
              "|" + "|".join("---" if k in ("task", "paper_source") else "---:" for k, _ in cols) + "|"]
    for row in result.rows:
        lines.append("| " + " | ".join(_cell(k, row, unavailable, markers) for k, _ in cols) + " |")
    lines.append("")
    for metric, mark in markers.items():
        lines.append(f"{mark} {unavailable[metric].cell()}  ")
    for note in result.notes:
        lines.append(f"{note}  ")
    return "\n".join(lines).rstrip() + "\n"


def write_set_table_csv(result: SetResult, unavailable: dict, path: str | Path) -> Path:
    """The set's table as CSV: machine-readable column names, full ``not computed (needs …)`` text in cells."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [k for k, _ in table_columns(result)]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for row in result.rows:
            writer.writerow([_cell(k, row, unavailable) if k in unavailable else
                             ("" if row.get(k) is None else row.get(k)) for k in keys])
    return path


def write_per_image_csv(records: list[dict], metrics: list[str], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = ["index", "name", "task", *INPUT_COLUMNS, *metrics]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in keys})
    return path


def _html_table(result: SetResult, unavailable: dict) -> str:
    cols = table_columns(result)
    markers = _markers(result, unavailable)
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(k, row, unavailable, markers))}</td>" for k, _ in cols)
                   + "</tr>" for row in result.rows)
    notes = "".join(f"<p class='note'>{html.escape(m + ' ' + unavailable[k].cell())}</p>" for k, m in markers.items())
    notes += "".join(f"<p class='note'>{html.escape(n)}</p>" for n in result.notes)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"


def write_report(out_dir: str | Path, title: str, results: list[SetResult], unavailable: dict,
                 meta: dict[str, str] | None = None) -> dict[str, Path]:
    """``report.md`` and ``report.html`` in ``out_dir``: run facts, then per set its table and grids, then the
    metrics that were not computed with what each needs. Image links are relative to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = meta or {}
    md = [f"# {title}", ""]
    md += [f"- **{k}**: {v}" for k, v in meta.items()]
    md.append("")
    page = [f"<h1>{html.escape(title)}</h1>", "<ul>"]
    page += [f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in meta.items()]
    page.append("</ul>")
    for result in results:
        md += [set_table_markdown(result, unavailable), ""]
        page += [f"<h2>{html.escape(result.title or result.name)}</h2>", _html_table(result, unavailable)]
        for label, grid in result.grids.items():
            rel = Path(grid).resolve().relative_to(out_dir.resolve()).as_posix()
            md += [f"**{label}** (LQ | restored | GT)", "", f"![{label}]({rel})", ""]
            page += [f"<h3>{html.escape(label)} <small>LQ | restored | GT</small></h3>",
                     f"<img src='{html.escape(rel)}' alt='{html.escape(label)}'>"]
    if unavailable:
        md += ["## Metrics not computed", ""]
        page.append("<h2>Metrics not computed</h2>")
        for err in unavailable.values():
            md += ["```", err.explain(), "```", ""]
            page.append(f"<pre>{html.escape(err.explain())}</pre>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:right}td:first-child{text-align:left}img{max-width:100%}"
             ".note{font-size:90%;color:#555;margin:2px 0}")
    paths = {"report_md": out_dir / "report.md", "report_html": out_dir / "report.html"}
    paths["report_md"].write_text("\n".join(md).rstrip() + "\n")
    paths["report_html"].write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                                    f"</title><style>{style}</style></head><body>{''.join(page)}</body></html>\n")
    return paths
