"""One table per sweep: ``summary.md`` and ``summary.csv`` in a multirun's root folder, one row per run.

Each row holds the run's overrides (those that vary across the sweep; the common ones head the Markdown), its
status (completed, failed with the error, not run, or no result yet), its test PSNR/SSIM-Y per task or test set and
overall (the run's ``test_metrics.csv``, written by ``src.train``), and beside it the paper's row where the paper
has one: DiffUIR Table 2 (``ablation=full|no_sdt|no_ec_sdt|no_ic_sdt``), Table 3 (``model.diffusion.delta_end``:
δ̄_T = 1000·(1e-6 + delta_end)/2 clipped to 1), Diff-Restorer Tables II–IV (``ablation=dr_*``) and V
(``ablation=dr_decoder_*``), from ``experiments/paper_tables`` (:mod:`src.reporting.paper_tables`). Paper columns
are named by the paper's task (``rain psnr``) or ``avg`` for its averaged columns (``avg fid``): the papers report
per task (DiffUIR: deraining averaged over 5 sets) or averaged perceptual metrics (Diff-Restorer), so they line up
with ours only where the groups are the same.

:class:`SweepSummaryCallback` (a Hydra callback, ``conf/hydra/default.yaml``) records each job's status in
``<job>/job_status.json`` when it ends and rebuilds the table after every job (under a file lock, so parallel
launchers such as submitit's write it in turn) and at the end of the multirun, so a failed run is a row saying so,
and a sweep that Hydra aborts after a failure still leaves its table. Rebuild it by hand with
``python -m src.utils.sweep_summary MULTIRUN_DIR``.
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

from src.utils.atomic import atomic_write_text

STATUS_FILE = "job_status.json"
METRICS_FILE = "test_metrics.csv"
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


def shared_coefficient(delta_end: float) -> float:
    """δ̄_T of DiffUIR's schedule for ``delta_end`` (src.diffuir.schedule; Table 3's "Uni ratio")."""
    return min(1.0, 1000 * (1e-6 + delta_end) / 2)


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


def read_metrics(job_dir: Path) -> dict[str, dict[str, float]]:
    """``{group: {"psnr": ..., "ssim": ...}}`` of the restored images, from the run's ``test_metrics.csv``."""
    path = job_dir / METRICS_FILE
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {r["task"]: {"psnr": float(r["psnr_out"]), "ssim": float(r["ssim_out"])} for r in csv.DictReader(f)}


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
    columns = [f"{g} {m}" for g in [*ours, "all"] for m in ("psnr", "ssim")]
    rows, paper_columns = [], []
    for j in jobs:
        paper = paper_row(j["overrides"], prefer=varying)
        cells = {f"{g} {m}": v for g, ms in j["metrics"].items() for m, v in ms.items()}
        if paper:
            paper_columns += [c for c in paper[1] if c not in paper_columns]
        rows.append({"job": j["num"], "dir": j["dir"], "overrides": [o for o in j["overrides"] if o not in common],
                     "status": j["status"], "error": j["error"], "cells": cells,
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


def to_markdown(summary: dict) -> str:
    cols = _all_columns(summary)
    lines = [f"# Sweep summary: {summary['root']}", "",
             f"{len(summary['rows'])} runs; common overrides: {' '.join(summary['common']) or '(none)'}", "",
             "Test PSNR / SSIM on Y of the restored images per task (or test set) and overall (`all`); under each run "
             "the paper's row where the paper has one (its columns: the paper's task, `avg` for averaged metrics).",
             "", "| job | overrides | status | " + " | ".join(cols) + " |",
             "|---:|---|---|" + "---:|" * len(cols)]
    for r in summary["rows"]:
        status = r["status"] + (f": {r['error']}" if r["error"] else "")
        status = status.replace("|", "\\|").replace("\n", " ")
        job = "" if r["job"] is None else str(r["job"])
        lines.append(f"| {job} | {' '.join(r['overrides']) or '(none)'} | {status} | "
                     + " | ".join(_fmt(r["cells"].get(c), c) for c in cols) + " |")
        if r["paper"]:
            lines.append(f"| | ↳ paper: {r['paper']} | | "
                         + " | ".join(_fmt(r["paper_cells"].get(c), c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def to_csv(summary: dict) -> str:
    cols, pcols = summary["columns"], summary["paper_columns"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["job", "overrides", "status", "error", *cols, "paper", *(f"paper {c}" for c in pcols), "dir"])
    for r in summary["rows"]:
        writer.writerow([r["job"], " ".join(r["overrides"]), r["status"], r["error"] or "",
                         *(_fmt(r["cells"].get(c), c) for c in cols), r["paper"],
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
    parser = argparse.ArgumentParser(prog="python -m src.utils.sweep_summary",
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
