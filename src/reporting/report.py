"""Evaluation results as tables (CSV, Markdown) beside the paper's numbers, and a report page (Markdown + HTML)
that shows every set's table and its LQ | restored | GT grids.

A table cell is a number; empty (the metric does not apply, e.g. a full-reference metric on a set without ground
truth, or FID of a task with too few images: the row's ``notes`` say why); or ``–`` in a paper column of the
Markdown/HTML tables (the paper reports no number for that task and metric). A metric that could not be computed
at all (weights absent, or it failed) gets no column: it is listed once, under the table and in the report, with
the file it needs and where to put it. So every numeric column of ``metrics.csv`` / ``per_image.csv`` parses as
numbers (pandas: float64), text lives in ``task``, ``paper_source`` and ``notes``.

The report page opens with a summary over all sets (per task: input → restored PSNR/SSIM, the gain, the paper's
number) and a bar chart of it (:func:`summary_chart`, matplotlib), then each set's table and its labelled
LQ | restored | GT grids (:mod:`src.reporting.grids`).
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from src.metrics.registry import METRICS
from src.reporting.baseline_columns import BASELINE_KEYS, baseline_cell, baseline_columns
from src.reporting.tables import mean_per_task
from src.utils.csv_cells import csv_cell, write_rows

INPUT_COLUMNS = ("psnr_in", "ssim_in")  # fidelity of the degraded input itself (Y), a baseline for the row
INPUT_LABELS = {"psnr_in": "PSNR input (Y)", "ssim_in": "SSIM input (Y)"}


def aggregate(records: list[dict], metrics: list[str]) -> list[dict]:
    """Mean of the input columns and of each metric per task and over all images (row ``all``):
    :func:`~src.reporting.tables.mean_per_task`."""
    return mean_per_task(records, (*INPUT_COLUMNS, *metrics))


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


def computed_metrics(result: SetResult, unavailable: dict) -> list[str]:
    """The set's metrics that have a column: not in ``unavailable`` (listed once instead)."""
    return [m for m in result.metrics if m not in unavailable]


def table_columns(result: SetResult, unavailable: dict | None = None) -> list[tuple[str, str]]:
    """(key, header) of every column of a set table, paper columns right after their metric; metrics in
    ``unavailable`` get none."""
    cols = [("task", "task"), ("n", "n")]
    if any(r.get("psnr_in") is not None for r in result.rows):
        cols += [(k, INPUT_LABELS[k]) for k in INPUT_COLUMNS]
    cols += baseline_columns(result.rows)  # the best classical baseline (src.reporting.baseline_columns)
    for m in computed_metrics(result, unavailable or {}):
        cols.append((m, f"{METRICS[m].label} {METRICS[m].arrow}"))
        if m in result.paper_metrics:
            cols.append((f"paper_{m}", "paper"))
    if any(m in result.paper_metrics for m in computed_metrics(result, unavailable or {})):
        cols.append(("paper_source", "paper source"))
    return cols


def _cell(key: str, row: dict) -> str:
    if key in BASELINE_KEYS:
        return baseline_cell(key, row)
    if key in ("task", "n", "paper_source"):
        return str(row.get(key, ""))
    if key.startswith("paper_"):
        value = row.get(key)
        return "–" if value is None else str(value)
    return _fmt(key, row.get(key))


def not_computed_lines(result: SetResult, unavailable: dict) -> list[str]:
    """One line per metric of the set that could not be computed, saying what it needs."""
    return [f"{METRICS[m].label}: {unavailable[m].cell()}" for m in result.metrics if m in unavailable]


def _row_notes(result: SetResult) -> list[str]:
    return [f"{row['task']}: {row['notes']}" for row in result.rows if row.get("notes")]


def set_table_markdown(result: SetResult, unavailable: dict, list_missing: bool = True) -> str:
    """The set's table in Markdown; under it the metrics not computed (once each; ``list_missing=False``: not here,
    the report page lists them once for all sets) and the notes."""
    cols = table_columns(result, unavailable)
    lines = [f"### {result.title or result.name}", ""] if (result.title or result.name) else []
    lines += ["| " + " | ".join(h for _, h in cols) + " |",
              "|" + "|".join("---" if k in ("task", "paper_source") else "---:" for k, _ in cols) + "|"]
    for row in result.rows:
        lines.append("| " + " | ".join(_cell(k, row) for k, _ in cols) + " |")
    lines.append("")
    missing = not_computed_lines(result, unavailable) if list_missing else []
    if missing:
        lines.append("Not computed: " + "; ".join(missing) + "  ")
    for note in [*_row_notes(result), *result.notes]:
        lines.append(f"{note}  ")
    return "\n".join(lines).rstrip() + "\n"


def _number(value) -> object:
    return "" if value is None else csv_cell(value)


def write_set_table_csv(result: SetResult, unavailable: dict, path: str | Path) -> Path:
    """The set's table as CSV: machine-readable column names, numbers or empty cells in every metric and paper
    column, the row's ``notes`` (why a cell is empty) last. Metrics not computed have no column."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [k for k, _ in table_columns(result, unavailable)] + ["notes"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for row in result.rows:
            writer.writerow([csv_cell(row.get(k) or "") if k in ("paper_source", "notes") else _number(row.get(k))
                             for k in keys])
    return path


def write_per_image_csv(records: list[dict], metrics: list[str], path: str | Path,
                        unavailable: dict | None = None) -> Path:
    """One row per image: ``index, name, task``, the input's PSNR/SSIM and each metric (numbers or empty).
    Metrics in ``unavailable``, or with no value for any image, get no column."""
    present = [k for k in (*INPUT_COLUMNS, *metrics)
               if k not in (unavailable or {}) and any(r.get(k) is not None for r in records)]
    keys = ["index", "name", "task", *present]
    return write_rows(path, [{k: _number(r.get(k)) for k in keys} for r in records], keys)


def _html_table(result: SetResult, unavailable: dict) -> str:
    """The set's table (in a box that scrolls sideways on a narrow window) and its notes; the metrics not computed
    are listed once for the whole page (:func:`_not_computed_html`)."""
    cols = table_columns(result, unavailable)
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(k, row))}</td>" for k, _ in cols) + "</tr>"
                   for row in result.rows)
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in [*_row_notes(result), *result.notes])
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{notes}"


def _not_computed_html(unavailable: dict) -> str:
    """The page's one list of metrics not computed: per metric, the files it needs (where they go, where they are
    published) or why it failed."""
    items = []
    for name, err in unavailable.items():
        label = METRICS[name].label if name in METRICS else name
        missing = getattr(err, "missing", None) or []
        if missing:
            needs = "; ".join(f"<code>{html.escape(str(dest))}</code> (published at <a href='{html.escape(f.url)}'>"
                              f"{html.escape(f.url)}</a>)" for f, dest in missing)
            reason = getattr(err, "reason", None)
            items.append(f"<li><b>{html.escape(label)}</b> needs {needs}" + (f" ({html.escape(reason)})" if reason
                                                                                else "") + "</li>")
        else:
            items.append(f"<li><b>{html.escape(label)}</b>: {html.escape(err.reason or 'failed')}</li>")
    return "<ul class='missing'>" + "".join(items) + "</ul>"


# ---------------------------------------------------------------------------------------------- the summary
SUMMARY_PAIRS = (("psnr", "PSNR (Y)"), ("ssim", "SSIM (Y)"))  # scored against psnr_in / ssim_in (also Y)
AXIS_UNITS = {"psnr": "PSNR (Y) in dB, higher is better", "ssim": "SSIM (Y), 0 to 1 (no unit), higher is better"}


def _paper_number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def summary_rows(results: list[SetResult], unavailable: dict | None = None) -> list[dict]:
    """Per set and task (the ``all`` row when a set has several tasks): n, and for PSNR / SSIM (Y) the input's,
    the restored, the gain (restored − input) and the paper's number (None where there is none)."""
    rows = []
    for result in results:
        computed = computed_metrics(result, unavailable or {})
        tasks = [r for r in result.rows if r["task"] != "all"]
        for row in (result.rows if len(tasks) > 1 else tasks):
            out = {"set": result.name, "task": row["task"], "n": row["n"]}
            for metric, _ in SUMMARY_PAIRS:
                value = row.get(metric) if metric in computed else None
                before = row.get(f"{metric}_in")
                out[f"{metric}_in"], out[metric] = before, value
                out[f"{metric}_gain"] = value - before if value is not None and before is not None else None
                out[f"paper_{metric}"] = _paper_number(row.get(f"paper_{metric}"))
            rows.append(out)
    return rows


def _summary_cells(row: dict) -> list[str]:
    cells = [row["set"], row["task"], str(row["n"])]
    for metric, _ in SUMMARY_PAIRS:
        key = "psnr_in" if metric == "psnr" else metric
        gain = row[f"{metric}_gain"]
        paper = row[f"paper_{metric}"]
        cells += [_fmt(key, row[f"{metric}_in"]), _fmt(key, row[metric]),
                  "" if gain is None else f"{gain:+.{2 if metric == 'psnr' else 4}f}",
                  "–" if paper is None else f"{paper:.{2 if metric == 'psnr' else 3}f}"]
    return cells


SUMMARY_HEADERS = ["set", "task", "n", *[h for _, label in SUMMARY_PAIRS
                                          for h in (f"{label} input", f"{label} restored", "gain", "paper")]]


def summary_chart(rows: list[dict], path: str | Path, backend: str = "auto") -> Path | None:
    """Bar chart of the summary (:func:`summary_figure`) saved as PNG at ``path``. None when matplotlib is not
    installed or there is nothing to plot."""
    from src.reporting.plots import pyplot_or_none

    plt = pyplot_or_none(backend)
    fig = summary_figure(rows, plt) if plt is not None else None
    if fig is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_figure(rows: list[dict], plt):
    """The summary's bar chart: per task, PSNR (dB) and SSIM of the input, of the restored image (its gain written
    above it) and the paper's number; axes labelled with their units. None when there is nothing to plot."""
    rows = [r for r in rows if r["task"] != "all" and any(r[m] is not None for m, _ in SUMMARY_PAIRS)]
    if not rows:
        return None
    several_sets = len({r["set"] for r in rows}) > 1
    names = [f"{r['set']}\n{r['task']}" if several_sets else r["task"] for r in rows]
    fig, axes = plt.subplots(1, len(SUMMARY_PAIRS), figsize=(max(7.0, 1.3 * len(rows) * len(SUMMARY_PAIRS) + 2),
                                                              3.8), squeeze=False)
    width = 0.27
    for ax, (metric, label) in zip(axes[0], SUMMARY_PAIRS):
        xs = range(len(rows))
        series = [("input", f"{metric}_in", "#b0b7c3", None), ("restored (ours)", metric, "#e8710a", None),
                  ("paper", f"paper_{metric}", "#3b6fb6", "//")]
        for k, (name, key, color, hatch) in enumerate(series):
            values = [r[key] for r in rows]
            pos = [x + (k - 1) * width for x, v in zip(xs, values) if v is not None]
            vals = [v for v in values if v is not None]
            if vals:
                ax.bar(pos, vals, width, label=name, color=color, hatch=hatch, edgecolor="white")
        for x, r in zip(xs, rows):
            if r[f"{metric}_gain"] is not None and r[metric] is not None:
                ax.annotate(f"{r[f'{metric}_gain']:+.{2 if metric == 'psnr' else 3}f}", (x, r[metric]),
                            xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), names, fontsize=8)
        ax.set_xlabel("set / task" if several_sets else "task", fontsize=9)
        ax.set_ylabel(AXIS_UNITS[metric], fontsize=9)
        ax.set_title(f"{label}: input → restored (gain{' in dB' if metric == 'psnr' else ''}), paper", fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
        top = max((v for r in rows for v in (r[f"{metric}_in"], r[metric], r[f"paper_{metric}"]) if v is not None),
                  default=1.0)
        ax.set_ylim(0, top * 1.25)
    axes[0][0].legend(fontsize=8, frameon=False, loc="upper left", ncols=3)
    fig.tight_layout()
    return fig


def _not_computed_md(unavailable: dict) -> list[str]:
    """Markdown twin of :func:`_not_computed_html`."""
    lines = []
    for name, err in unavailable.items():
        label = METRICS[name].label if name in METRICS else name
        missing = getattr(err, "missing", None) or []
        if missing:
            lines.append(f"- **{label}** needs " + "; ".join(f"`{dest}` (published at {f.url})" for f, dest in missing))
        else:
            lines.append(f"- **{label}**: {err.reason or 'failed'}")
    return lines


REPORT_STYLE = (  # readable on a 390 px phone: nothing is wider than the window (tables scroll inside their box)
    "body{font-family:sans-serif;margin:1em;max-width:1200px}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
    "td:first-child,th:first-child{text-align:left}.scroll{overflow-x:auto;max-width:100%}"
    "img{max-width:100%;height:auto}.chart{display:block;margin:1em 0}"
    ".note{font-size:90%;color:#555;margin:2px 0}li,code,a{overflow-wrap:anywhere}"
    ".missing{font-size:90%}")


def write_report(out_dir: str | Path, title: str, results: list[SetResult], unavailable: dict,
                 meta: dict[str, str] | None = None) -> dict[str, Path]:
    """``report.md`` and ``report.html`` in ``out_dir``: the summary table and its bar chart (``summary.png``),
    run facts, then per set its table and grids, then (once for all sets) the metrics that were not computed with
    what each needs. Image links are relative to ``out_dir``. The HTML page fits a phone's width."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = meta or {}
    summary = summary_rows(results, unavailable)
    chart = summary_chart(summary, out_dir / "summary.png")
    md = [f"# {title}", "", "## Summary", "",
          "| " + " | ".join(SUMMARY_HEADERS) + " |", "|---|---|" + "---:|" * (len(SUMMARY_HEADERS) - 2)]
    md += ["| " + " | ".join(_summary_cells(r)) + " |" for r in summary]
    md.append("")
    if chart is not None:
        md += ["![per-task gain beside the paper](summary.png)", ""]
    md += [f"- **{k}**: {v}" for k, v in meta.items()]
    md.append("")
    page = [f"<h1>{html.escape(title)}</h1>", "<h2 id='summary'>Summary</h2>",
            "<div class='scroll'><table class='summary'><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in SUMMARY_HEADERS) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _summary_cells(r)) + "</tr>"
                      for r in summary) + "</tbody></table></div>"]
    if chart is not None:
        page.append("<a href='summary.png'><img class='chart' src='summary.png' alt='per-task PSNR (dB) and SSIM: "
                    "input, restored, paper'></a>")
    else:
        page.append("<p class='note'>No chart: matplotlib is not installed.</p>")
    page += ["<h2>Run</h2>", "<ul>"]
    page += [f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in meta.items()]
    page.append("</ul>")
    for result in results:
        md += [set_table_markdown(result, unavailable, list_missing=False), ""]
        page += [f"<h2>{html.escape(result.title or result.name)}</h2>", _html_table(result, unavailable)]
        for label, grid in result.grids.items():
            rel = Path(grid).resolve().relative_to(out_dir.resolve()).as_posix()
            md += [f"**{label}** (LQ | restored | GT)", "", f"![{label}]({rel})", ""]
            page += [f"<h3>{html.escape(label)} <small>LQ | restored | GT</small></h3>",
                     f"<img src='{html.escape(rel)}' alt='{html.escape(label)}'>"]
    if unavailable:
        md += ["## Metrics not computed", "", *_not_computed_md(unavailable), ""]
        page += ["<h2 id='not-computed'>Metrics not computed</h2>", _not_computed_html(unavailable)]
    paths = {"report_md": out_dir / "report.md", "report_html": out_dir / "report.html"}
    if chart is not None:
        paths["summary_chart"] = chart
    paths["report_md"].write_text("\n".join(md).rstrip() + "\n")
    paths["report_html"].write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, "
        f"initial-scale=1'><title>{html.escape(title)}</title><style>{REPORT_STYLE}</style></head><body>"
        f"{''.join(page)}</body></html>\n")
    return paths
