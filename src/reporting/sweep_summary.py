"""One table per sweep: ``summary.md`` and ``summary.csv`` in a multirun's root folder, one row per run.

Each row holds the run's overrides (those that vary across the sweep; the common ones head the Markdown), its
status (completed, failed with the error, not run, or no result yet), its test PSNR/SSIM-Y per task or test set and
overall (the run's ``test_metrics.csv``, written by ``src.train``), and beside it the paper's row where the paper
has one: DiffUIR Table 2 (``ablation=full|no_sdt|no_ec_sdt|no_ic_sdt``), Table 3 (``model.diffusion.delta_end``:
δ̄_T = 1000·(1e-6 + delta_end)/2 clipped to 1), Diff-Restorer Tables II–IV (``ablation=dr_*``) and V
(``ablation=dr_decoder_*``), from ``experiments/paper_tables`` (:mod:`src.reporting.paper_tables`). Paper columns
are named by the paper's task (``rain psnr``) or ``avg`` for its averaged columns (``avg fid``), and so are ours:
a run on the papers' test sets also has per-task columns (``test_tasks.csv``, written by ``src.train``: each task the
mean of its sets, as DiffUIR averages its 5 deraining sets), and Diff-Restorer's ``avg`` FID / LPIPS / DISTS / NIQE are
the mean over the five sets of Tables II-V (``data/testsets=diff_restorer_ablation``) scored by ``src.eval`` into the
job folder (``python -m src.eval ... testsets=[LOL,SOTS-outdoor,RealSnow,Snow+Noise,Raindrop+Noise+Blur]
hydra.run.dir=<job>/eval``); a cell without a measurement says why (which metric weights are missing, or that the
evaluation has not been run).

:class:`SweepSummaryCallback` (a Hydra callback, ``conf/hydra/default.yaml``) records each job's status in
``<job>/job_status.json`` when it ends and rebuilds the table after every job (under a file lock, so parallel
launchers such as submitit's write it in turn) and at the end of the multirun, so a failed run is a row saying so,
and a sweep that Hydra aborts after a failure still leaves its table. Rebuild it by hand with
``python -m src.reporting.sweep_summary MULTIRUN_DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from src.tasks import shared_coefficient  # Table 3's "Uni ratio" of a swept delta_end
from src.utils.atomic import atomic_write_text

STATUS_FILE = "job_status.json"
METRICS_FILE = "test_metrics.csv"
TASKS_FILE = "test_tasks.csv"      # the papers' per-task groups of the test sets (src.train)
EVAL_DIR = "eval"                  # src.eval of the job's checkpoint, run into <job>/eval (its <set>/metrics.csv)
PERCEPTUAL = ("fid", "lpips", "dists", "niqe")  # Diff-Restorer Tables II-V, averaged over five sets
ABLATION_SETS = ("LOL", "SOTS-outdoor", "RealSnow", "Snow+Noise", "Raindrop+Noise+Blur")
NOT_RUN_FILE = "NOT_RUN.md"

# (paper, table, row) of a run, by one override
PAPER_ROWS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("ablation", "full"): ("DiffUIR", "2", "DiffUIR"),
    ("ablation", "no_sdt"): ("DiffUIR", "2", "-SDT"),
    ("ablation", "no_ec_sdt"): ("DiffUIR", "2", "-EC & SDT"),
    ("ablation", "no_ic_sdt"): ("DiffUIR", "2", "-IC & SDT"),
    ("ablation", "dr_full"): ("Diff-Restorer", "II", "OursS"),
    ("ablation", "dr_no_bs"): ("Diff-Restorer", "II", "w/o Bs"),
    ("ablation", "dr_no_pd"): ("Diff-Restorer", "II", "w/o PD"),
    ("ablation", "dr_no_dmb"): ("Diff-Restorer", "III", "w/o DMB"),
    ("ablation", "dr_no_cd"): ("Diff-Restorer", "III", "w/o CD"),
    ("ablation", "dr_no_dmb_cd"): ("Diff-Restorer", "III", "w/o DMB + CD"),
    ("ablation", "dr_no_ldeg"): ("Diff-Restorer", "IV", "w/o Ldeg"),
    ("ablation", "dr_no_lrec"): ("Diff-Restorer", "IV", "w/o Lrec"),
    ("ablation", "dr_no_ldeg_lrec"): ("Diff-Restorer", "IV", "w/o Ldeg + Lrec"),
    ("ablation", "dr_decoder_sd"): ("Diff-Restorer", "V", "SD decoder"),
    ("ablation", "dr_decoder_consistency"): ("Diff-Restorer", "V", "Consistency Decoder"),
    ("ablation", "dr_decoder_no_drb"): ("Diff-Restorer", "V", "Ours decoder w/o DRB"),
    ("ablation", "dr_decoder_full"): ("Diff-Restorer", "V", "Ours decoder"),
}
DELTA_END_KEY = "model.diffusion.delta_end"


# ------------------------------------------------------------------------------------------------ one job
def write_job_status(job_dir: str | Path, status: str, overrides: Sequence[str], num: int | None = None,
                     error: str | None = None) -> Path:
    """``<job_dir>/job_status.json``: what the summary reads to tell a failed run from one still running."""
    record = {"num": num, "status": status, "overrides": list(overrides), "error": error}
    return atomic_write_text(Path(job_dir) / STATUS_FILE, json.dumps(record, indent=1) + "\n")


def _error_text(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = " ".join(str(exc).split())  # one line: the table cell
    return f"{type(exc).__name__}: {text}"[:400]


def _read_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def _job_num(job_dir: Path, status: dict) -> int | None:
    if status.get("num") is not None:
        return int(status["num"])
    head = job_dir.name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


def per_task_of_sets(rows: Sequence[dict], set_tasks: dict[str, str]) -> list[dict]:
    """Per-task rows from per-test-set rows (``task`` holding the set's name; ``set_tasks``: set -> task): each
    metric of a task is the mean of its sets' means, as the papers average their sets (DiffUIR Table 1: deraining over
    Rain100H/L, Test100/1200/2800); ``n`` counts the images. Sets of unknown task are left out; ``all`` stays."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["task"] in set_tasks:
            groups.setdefault(set_tasks[r["task"]], []).append(r)
    out = []
    for task, rs in groups.items():
        row = {"task": task, "n": sum(int(r["n"]) for r in rs)}
        for key in ("psnr_in", "ssim_in", "psnr_out", "ssim_out"):
            row[key] = sum(float(r[key]) for r in rs) / len(rs)
        out.append(row)
    return out + [r for r in rows if r["task"] == "all"]


def _read_rows(path: Path) -> dict[str, dict[str, float]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {r["task"]: {"psnr": float(r["psnr_out"]), "ssim": float(r["ssim_out"])} for r in csv.DictReader(f)}


def read_metrics(job_dir: Path) -> dict[str, dict[str, float]]:
    """``{group: {"psnr": ..., "ssim": ...}}`` of the restored images: the run's ``test_metrics.csv`` (per task or
    test set), its per-task groups (``test_tasks.csv``) and the perceptual ``avg`` (:func:`read_eval_avg`)."""
    metrics = _read_rows(job_dir / METRICS_FILE)
    for task, ms in _read_rows(job_dir / TASKS_FILE).items():
        metrics.setdefault(task, ms)
    avg = read_eval_avg(job_dir)
    if avg:
        metrics["avg"] = avg
    return metrics


def read_eval_avg(job_dir: Path, sets: Sequence[str] = ABLATION_SETS) -> dict[str, float]:
    """Mean over ``sets`` of each perceptual metric of the ``all`` row of ``<job>/eval/<set>/metrics.csv`` (what
    ``src.eval`` writes), for metrics measured on every one of the sets; {} when the sets were not all evaluated."""
    values: dict[str, list[float]] = {}
    for name in sets:
        path = job_dir / EVAL_DIR / name / "metrics.csv"
        if not path.is_file():
            return {}
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("task") == "all"]
        for m in PERCEPTUAL:
            if rows and (rows[0].get(m) or "").strip():
                values.setdefault(m, []).append(float(rows[0][m]))
    return {m: sum(v) / len(v) for m, v in values.items() if len(v) == len(sets)}


def unmeasured_reason(job_dir: Path, metric: str) -> str:
    """Why a paper's perceptual column of a job has no measured value: the missing weight files, or no evaluation."""
    from src.metrics.perceptual import missing_weights

    weights = _job_weights_dir(job_dir)
    missing = missing_weights(metric, weights) if metric in PERCEPTUAL and weights is not None else []
    if missing:
        return "missing " + ", ".join(str(path) for _, path in missing)
    return f"not measured: run src.eval on {', '.join(ABLATION_SETS)} into {EVAL_DIR}/"


def _job_weights_dir(job_dir: Path) -> Path | None:
    """The metric weights folder of a job (``paths.weights_dir``/metrics of its saved config), if it resolves."""
    from omegaconf import OmegaConf

    path = job_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    try:
        weights = OmegaConf.select(OmegaConf.load(path), "paths.weights_dir", throw_on_resolution_failure=True)
    except Exception:  # an interpolation that needs Hydra's runtime: no weights folder to name
        return None
    return Path(str(weights)) / "metrics" if weights else None


def job_record(job_dir: Path) -> dict:
    """Status, overrides and metrics of one job folder."""
    status_path = job_dir / STATUS_FILE
    status = json.loads(status_path.read_text()) if status_path.is_file() else {}
    overrides = status.get("overrides") or _read_overrides(job_dir)
    metrics = read_metrics(job_dir)
    state, error = status.get("status"), status.get("error")
    if (job_dir / NOT_RUN_FILE).is_file():
        lines = [ln for ln in (job_dir / NOT_RUN_FILE).read_text().splitlines() if ln.strip() and ln[0] != "#"]
        state, error = "not run", (lines[0] if lines else "not run")
    elif state is None:
        state = "completed" if metrics else "no result (still running, or killed: see the job's log)"
    elif state == "completed" and not metrics:
        state = "completed (no test metrics)"
    return {"dir": job_dir, "num": _job_num(job_dir, status), "overrides": overrides, "status": state,
            "error": error, "metrics": metrics}


def find_jobs(multirun_dir: str | Path) -> list[dict]:
    """Every job folder (one holding ``.hydra/overrides.yaml``) under a multirun folder, in job order."""
    root = Path(multirun_dir)
    dirs = []
    for here, subdirs, _ in os.walk(root):  # job folders sit one level down (deeper when an override holds a "/")
        if Path(here) != root and (Path(here) / ".hydra" / "overrides.yaml").is_file():
            dirs.append(Path(here))
            subdirs.clear()  # not into a job's checkpoints, logs, images
        else:
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
    jobs = [job_record(d) for d in dirs]
    return sorted(jobs, key=lambda j: (j["num"] is None, j["num"] if j["num"] is not None else 0, str(j["dir"])))


# ------------------------------------------------------------------------------------------------ paper rows
def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def paper_row(overrides: Sequence[str], prefer: Sequence[str] = ()) -> tuple[str, dict[str, float]] | None:
    """(label, ``{column: value}``) of the paper's row for a run with these overrides, or None.

    ``prefer``: override keys tried first (those the sweep varies)."""
    from src.reporting.paper_tables import paper_values

    pairs = [o.split("=", 1) for o in overrides if "=" in o]
    pairs.sort(key=lambda kv: kv[0].lstrip("+~") not in prefer)
    for key, value in pairs:
        key = key.lstrip("+~")
        if key == DELTA_END_KEY and _as_float(value) is not None:
            ratio = shared_coefficient(float(value))
            for v in paper_values(paper="DiffUIR", table="3"):
                label = _as_float(v.method.rsplit(" ", 1)[-1])
                if v.method.startswith("Uni ratio") and label is not None and abs(label - ratio) < 0.01:
                    found = ("DiffUIR", "3", v.method)
                    break
            else:
                continue
        elif (key, value) in PAPER_ROWS:
            found = PAPER_ROWS[(key, value)]
        else:
            continue
        paper, table, method = found
        cells = {f"{v.task or 'avg'} {v.metric_key}": v.number
                 for v in paper_values(paper=paper, table=table, method=method)}
        return f"{paper} Table {table} \"{method}\"", cells
    return None


# ------------------------------------------------------------------------------------------------ the table
def _fmt(value: float | None, column: str) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if column.endswith(("ssim", "lpips", "dists")) else f"{value:.2f}"


def summarize(multirun_dir: str | Path) -> dict:
    """Rows and columns of the sweep's table (what :func:`write_summary` writes)."""
    jobs = find_jobs(multirun_dir)
    override_sets = [set(j["overrides"]) for j in jobs]
    common = set.intersection(*override_sets) if len(override_sets) > 1 else set()
    varying = [o.split("=", 1)[0] for s in override_sets for o in s - common]
    ours: list[str] = []
    for j in jobs:
        for group in j["metrics"]:
            if group != "all" and group not in ours:
                ours.append(group)
    columns = [f"{g} {m}" for g in [*ours, "all"] if g != "avg" for m in ("psnr", "ssim")]
    rows, paper_columns = [], []
    for j in jobs:
        paper = paper_row(j["overrides"], prefer=varying)
        cells = {f"{g} {m}": v for g, ms in j["metrics"].items() for m, v in ms.items()}
        if paper:
            paper_columns += [c for c in paper[1] if c not in paper_columns]
        why = {f"avg {m}": unmeasured_reason(j["dir"], m) for m in PERCEPTUAL
               if paper and f"avg {m}" in paper[1] and f"avg {m}" not in cells}
        rows.append({"job": j["num"], "dir": j["dir"], "overrides": [o for o in j["overrides"] if o not in common],
                     "status": j["status"], "error": j["error"], "cells": cells, "why": why,
                     "paper": paper[0] if paper else "", "paper_cells": paper[1] if paper else {}})
    return {"root": Path(multirun_dir), "common": sorted(common), "columns": columns,
            "paper_columns": paper_columns, "rows": rows}


def _all_columns(summary: dict) -> list[str]:
    """Ours and the paper's columns side by side: per group (ours first), then overall, then averaged metrics."""
    extra = [c for c in summary["paper_columns"] if c not in summary["columns"]]
    overall = ["all psnr", "all ssim"]
    groups = [c for c in summary["columns"] if c not in overall]
    return (groups + [c for c in extra if not c.startswith("avg ")] + overall
            + [c for c in extra if c.startswith("avg ")])


def _cell(row: dict, column: str) -> str:
    """A measured cell, or why it has no value (a paper's perceptual column: missing weights / not evaluated)."""
    value = row["cells"].get(column)
    if value is None and column in row.get("why", {}):
        return "(" + row["why"][column].replace("|", "\\|") + ")"
    return _fmt(value, column)


def to_markdown(summary: dict) -> str:
    cols = _all_columns(summary)
    lines = [f"# Sweep summary: {summary['root']}", "",
             f"{len(summary['rows'])} runs; common overrides: {' '.join(summary['common']) or '(none)'}", "",
             "Test PSNR / SSIM on Y of the restored images per test set, per task (each task the mean of its sets) and "
             "overall (`all`), and `avg` FID / LPIPS / DISTS / NIQE over Diff-Restorer's five ablation sets (from "
             "src.eval in the job's eval/ folder; otherwise the cell says why); under each run the paper's row where "
             "the paper has one (its columns: the paper's task, `avg` for averaged metrics).",
             "", "| job | overrides | status | " + " | ".join(cols) + " |",
             "|---:|---|---|" + "---:|" * len(cols)]
    for r in summary["rows"]:
        status = r["status"] + (f": {r['error']}" if r["error"] else "")
        status = status.replace("|", "\\|").replace("\n", " ")
        job = "" if r["job"] is None else str(r["job"])
        lines.append(f"| {job} | {' '.join(r['overrides']) or '(none)'} | {status} | "
                     + " | ".join(_cell(r, c) for c in cols) + " |")
        if r["paper"]:
            lines.append(f"| | ↳ paper: {r['paper']} | | "
                         + " | ".join(_fmt(r["paper_cells"].get(c), c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def to_csv(summary: dict) -> str:
    cols, pcols = summary["columns"], summary["paper_columns"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    measured = [c for c in pcols if c.startswith("avg ")]  # the papers' averaged columns, measured or why not
    writer.writerow(["job", "overrides", "status", "error", *cols, *measured, "paper",
                     *(f"paper {c}" for c in pcols), "dir"])
    for r in summary["rows"]:
        writer.writerow([r["job"], " ".join(r["overrides"]), r["status"], r["error"] or "",
                         *(_fmt(r["cells"].get(c), c) for c in cols), *(_cell(r, c) for c in measured), r["paper"],
                         *(_fmt(r["paper_cells"].get(c), c) for c in pcols), str(r["dir"])])
    return buf.getvalue()


@contextlib.contextmanager
def _locked(root: Path):
    """An exclusive lock on ``<root>/.summary.lock`` (jobs of a parallel launcher finish at the same time)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock (the writes are still atomic)
        yield
        return
    with open(root / ".summary.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_summary(multirun_dir: str | Path) -> dict[str, Path]:
    """(Re)write ``summary.md`` and ``summary.csv`` in ``multirun_dir``; returns their paths."""
    root = Path(multirun_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"multirun folder not found: {root}")
    with _locked(root):
        summary = summarize(root)
        return {"markdown": atomic_write_text(root / "summary.md", to_markdown(summary)),
                "csv": atomic_write_text(root / "summary.csv", to_csv(summary))}


# ------------------------------------------------------------------------------------------------ Hydra
def _multirun_root(config) -> Path:
    """The sweep folder of a job: the nearest parent of its output folder holding Hydra's ``multirun.yaml``."""
    out = Path(str(config.hydra.runtime.output_dir))
    for parent in out.parents:
        if (parent / "multirun.yaml").is_file():
            return parent
    return Path(str(config.hydra.sweep.dir))


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover (hydra-core is a dependency)
    _HydraCallback = object


class SweepSummaryCallback(_HydraCallback):
    """Hydra callback: each multirun job's status on its end, and the sweep's table after every job and at the end."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        status = job_return.status.name.lower()
        exc = getattr(job_return, "_return_value", None) if status == "failed" else None
        write_job_status(config.hydra.runtime.output_dir, status, list(config.hydra.overrides.task),
                         num=int(config.hydra.job.num), error=_error_text(exc))
        write_summary(_multirun_root(config))

    def on_multirun_end(self, config, **kwargs) -> None:
        root = Path(str(config.hydra.sweep.dir))
        if root.is_dir():
            paths = write_summary(root)
            print(f"sweep summary: {paths['markdown']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.reporting.sweep_summary",
                                     description="Rebuild summary.md / summary.csv of a Hydra multirun folder.")
    parser.add_argument("multirun_dir", help="the multirun's root folder (logs/<task>/multiruns/<time>)")
    args = parser.parse_args(argv)
    root = Path(args.multirun_dir)
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 2
    paths = write_summary(root)
    print(paths["markdown"].read_text())
    print(f"wrote {paths['markdown']} and {paths['csv']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
