"""Sweeps end in one table: summary.md / summary.csv in the multirun folder, one row per run (failed ones too),
the paper's row beside each; the SLURM launcher's local twin (submitit_local) writes it too."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.diffuir.schedule import shared_coefficient
from src.reporting.sweep_summary import main, paper_row, write_summary
from tests.conftest import CONF, ROOT, compose_train

TINY = ["experiment=diffuir_t", "debug=default", "model.net.dim=8", "trainer=cpu", "num_threads=1", "logger=csv",
        "trainer.max_steps=1"]


def multirun(args: list[str], sweep_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(sweep_dir.parent)}
    return subprocess.run([sys.executable, "-m", "src.train", "--multirun", *args, f"hydra.sweep.dir={sweep_dir}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def table_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_paper_rows_of_every_table():
    label, cells = paper_row(["experiment=diffuir_l", "ablation=no_sdt"])
    assert label == 'DiffUIR Table 2 "-SDT"' and cells["low_light psnr"] == 22.99 and cells["blur ssim"] == 0.850
    assert shared_coefficient(1.8e-3) == pytest.approx(0.9005)
    for delta_end, ratio in (("2.0e-4", "0.1"), ("5.0e-4", "0.25"), ("1.0e-3", "0.5"), ("1.5e-3", "0.75"),
                             ("1.8e-3", "0.9"), ("2.0e-3", "1")):
        label, cells = paper_row([f"model.diffusion.delta_end={delta_end}", "ablation=full"],
                                 prefer=["model.diffusion.delta_end"])
        assert label == f'DiffUIR Table 3 "Uni ratio {ratio}"' and len(cells) == 10
    assert paper_row(["model.diffusion.delta_end=7e-4"]) is None  # not a column of Table 3
    assert paper_row(["ablation=dr_no_dmb_cd"]) == ('Diff-Restorer Table III "w/o DMB + CD"', {
        "avg fid": 61.30, "avg lpips": 0.2385, "avg dists": 0.1507, "avg niqe": 3.89})
    assert paper_row(["ablation=dr_decoder_no_drb"])[0] == 'Diff-Restorer Table V "Ours decoder w/o DRB"'
    assert paper_row(["model.optimizer.lr=8e-5", "data.batch_size=10"]) is None  # hparams: no paper row
    # every swept value of every sweep config that names a paper table has its paper row
    for sweep in ("diffuir_table2", "diffuir_table3", "diff_restorer_ablations", "diff_restorer_table5"):
        params = compose_train([f"sweep={sweep}"], hydra_config=True).hydra.sweeper.params
        (key, values), = params.items()
        assert all(paper_row([f"{key}={v}"]) for v in str(values).split(",")), sweep


def test_failed_run_is_a_row_and_the_cli_rebuilds_the_table(tmp_path):
    sweep = tmp_path / "sweep"
    proc = multirun([*TINY, "ablation=full", "model.net.in_channels=6,3"], sweep)
    assert proc.returncode != 0  # Hydra reports the failed job after running the others
    rows = table_rows(sweep / "summary.csv")
    assert [(r["job"], r["overrides"], r["status"]) for r in rows] == [
        ("0", "model.net.in_channels=6", "completed"), ("1", "model.net.in_channels=3", "failed")]
    assert "InstantiationException" in rows[1]["error"] and "in_channels=3 does not fit" in rows[1]["error"]
    assert float(rows[0]["all psnr"]) > 5 and 0 < float(rows[0]["all ssim"]) < 1 and rows[1]["all psnr"] == ""
    assert rows[0]["paper"] == rows[1]["paper"] == 'DiffUIR Table 2 "DiffUIR"'
    assert rows[0]["paper rain psnr"] == "31.03"
    md = (sweep / "summary.md").read_text()
    assert "| 1 | model.net.in_channels=3 | failed: InstantiationException" in md and md.count("↳ paper:") == 2

    before = (sweep / "summary.csv").read_text()
    (sweep / "summary.md").unlink()
    (sweep / "summary.csv").unlink()
    assert main([str(sweep)]) == 0
    assert (sweep / "summary.csv").read_text() == before and (sweep / "summary.md").read_text() == md
    assert main([str(tmp_path / "nope")]) == 2


def test_job_without_a_result_is_a_row_saying_so(tmp_path):
    """A job killed before it ended (no job_status.json, no metrics) still has its row."""
    job = tmp_path / "sweep" / "0_ablation=full"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- ablation=full\n")
    write_summary(tmp_path / "sweep")
    (row,) = table_rows(tmp_path / "sweep" / "summary.csv")
    assert row["status"].startswith("no result") and row["paper"] == 'DiffUIR Table 2 "DiffUIR"'


def test_launcher_presets_and_callback_are_configured():
    cfg = compose_train(["hydra/launcher=submitit_slurm"], hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.constraint) == (1, "a100") and launcher.timeout_min > 0
    assert launcher.partition is None  # the cluster's default partition unless hydra.launcher.partition=...
    assert compose_train(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"],
                         hydra_config=True).hydra.launcher.partition == "gpu"
    local = compose_train(["hydra/launcher=submitit_local"], hydra_config=True).hydra.launcher
    assert local._target_.endswith("submitit_launcher.LocalLauncher")
    assert cfg.hydra.callbacks.sweep_summary._target_ == "src.reporting.sweep_summary.SweepSummaryCallback"
    assert (CONF / "hydra" / "launcher" / "submitit_slurm.yaml").is_file()


@pytest.mark.slow
def test_table3_on_the_submitit_local_launcher_ends_in_one_table(tmp_path):
    """Two jobs of Table 3 as submitit runs them (the SLURM launcher's code path, local processes): ~70 s."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = multirun([*TINY, "sweep=diffuir_table3", "model.diffusion.delta_end=2.0e-4,1.8e-3",
                     "hydra/launcher=submitit_local"], sweep)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = table_rows(sweep / "summary.csv")
    assert [(r["overrides"], r["status"], r["paper"]) for r in rows] == [
        ("model.diffusion.delta_end=0.0002", "completed", 'DiffUIR Table 3 "Uni ratio 0.1"'),
        ("model.diffusion.delta_end=0.0018", "completed", 'DiffUIR Table 3 "Uni ratio 0.9"')]
    assert all(float(r["all psnr"]) > 5 for r in rows)
    assert (sweep / ".submitit").is_dir()  # it really went through submitit


# ------------------------------------------------------------------------------------------ paper columns measured
def _job(root: Path, num: int, override: str, weights: Path | None = None) -> Path:
    job = root / f"{num}_{override}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- {override}\n")
    if weights is not None:
        (job / ".hydra" / "config.yaml").write_text(f"paths:\n  weights_dir: {weights}\n")
    return job


def _metrics_csv(path: Path, rows: list[tuple[str, int, float, float]]) -> None:
    lines = ["task,n,psnr_in,ssim_in,psnr_out,ssim_out"] + [f"{t},{n},10.0,0.5,{p},{s}" for t, n, p, s in rows]
    path.write_text("\n".join(lines) + "\n")


def test_per_task_of_sets_is_the_mean_of_each_tasks_sets():
    from src.reporting.sweep_summary import per_task_of_sets

    rows = [{"task": "Rain100H", "n": 100, "psnr_in": 12.0, "ssim_in": 0.4, "psnr_out": 30.0, "ssim_out": 0.9},
            {"task": "Test2800", "n": 2800, "psnr_in": 14.0, "ssim_in": 0.6, "psnr_out": 34.0, "ssim_out": 0.94},
            {"task": "LOL", "n": 15, "psnr_in": 8.0, "ssim_in": 0.2, "psnr_out": 25.0, "ssim_out": 0.8},
            {"task": "all", "n": 2915, "psnr_in": 13.9, "ssim_in": 0.59, "psnr_out": 33.8, "ssim_out": 0.93}]
    out = per_task_of_sets(rows, {"Rain100H": "rain", "Test2800": "rain", "LOL": "low_light"})
    rain = out[0]
    assert (rain["task"], rain["n"]) == ("rain", 2900)  # the sets' mean, not the images' (that would be 33.86)
    assert rain["psnr_out"] == pytest.approx(32.0) and rain["ssim_out"] == pytest.approx(0.92)
    assert [r["task"] for r in out] == ["rain", "low_light", "all"] and out[-1] is rows[-1]


def test_table2_summary_puts_measured_tasks_beside_the_paper(tmp_path):
    """A DiffUIR Table 2 sweep on the papers' test sets: per-set rows and, from test_tasks.csv, per-task columns
    named as the paper's (rain psnr ...), measured and paper values in the same column."""
    sweep = tmp_path / "sweep"
    for num, ablation in enumerate(("full", "no_sdt")):
        job = _job(sweep, num, f"ablation={ablation}")
        _metrics_csv(job / "test_metrics.csv", [("Rain100H", 1, 29.0 + num, 0.88), ("Test100", 1, 31.0, 0.90),
                                                 ("LOL", 1, 24.0, 0.85), ("all", 3, 28.0, 0.87)])
        _metrics_csv(job / "test_tasks.csv", [("rain", 2, 30.0 + num / 2, 0.89), ("low_light", 1, 24.0, 0.85),
                                               ("all", 3, 28.0, 0.87)])
    write_summary(sweep)
    rows = table_rows(sweep / "summary.csv")
    assert [r["paper"] for r in rows] == ['DiffUIR Table 2 "DiffUIR"', 'DiffUIR Table 2 "-SDT"']
    assert rows[0]["rain psnr"] == "30.00" and rows[1]["rain psnr"] == "30.50" and rows[0]["Rain100H psnr"] == "29.00"
    assert rows[0]["paper rain psnr"] == "31.03" and rows[1]["paper low_light psnr"] == "22.99"
    md = (sweep / "summary.md").read_text()
    def cells(start):
        return [c.strip() for c in next(line for line in md.splitlines() if start in line).split("|")]

    header, measured, paper = cells("| job |"), cells("| 0 |"), cells("↳ paper")
    col = header.index("rain psnr")
    assert (measured[col], paper[col]) == ("30.00", "31.03")  # side by side in one column


def test_table4_summary_measures_the_five_set_average_or_says_what_is_missing(tmp_path):
    """Diff-Restorer Table IV: avg FID / LPIPS / DISTS / NIQE over the five ablation sets from src.eval's tables
    in <job>/eval; without them the cell names the missing metric weights."""
    from src.reporting.sweep_summary import ABLATION_SETS

    sweep = tmp_path / "sweep"
    weights = tmp_path / "weights"
    measured = _job(sweep, 0, "ablation=dr_no_ldeg", weights)
    _metrics_csv(measured / "test_metrics.csv", [("all", 5, 20.0, 0.7)])
    for i, name in enumerate(ABLATION_SETS):
        (measured / "eval" / name).mkdir(parents=True)
        (measured / "eval" / name / "metrics.csv").write_text(
            f"task,n,psnr,fid,lpips,dists,niqe,notes\nlow_light,3,20,1,1,1,1,\nall,3,20,{50 + i},{0.2 + i / 100},"
            f"{0.1 + i / 100},{3 + i / 10},\n")
    unmeasured = _job(sweep, 1, "ablation=dr_no_lrec", weights)
    _metrics_csv(unmeasured / "test_metrics.csv", [("all", 5, 20.0, 0.7)])
    write_summary(sweep)
    rows = table_rows(sweep / "summary.csv")
    assert rows[0]["paper"] == 'Diff-Restorer Table IV "w/o Ldeg"' and rows[0]["paper avg fid"]
    assert (rows[0]["avg fid"], rows[0]["avg lpips"], rows[0]["avg dists"], rows[0]["avg niqe"]) == (
        "52.00", "0.2200", "0.1200", "3.20")
    assert rows[1]["avg lpips"].startswith("(missing ") and str(weights / "metrics") in rows[1]["avg lpips"]
    md = (sweep / "summary.md").read_text()
    assert "| 52.00 |" in md and "(missing " in md
