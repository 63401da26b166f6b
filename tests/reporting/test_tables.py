import csv

import pytest

from src.reporting.tables import per_task_table, to_markdown, write_csv


def test_per_task_means_and_all_row(tmp_path):
    recs = [{"task": "noise", "psnr_in": 20, "ssim_in": 0.5, "psnr_out": 24, "ssim_out": 0.7},
            {"task": "noise", "psnr_in": 22, "ssim_in": 0.6, "psnr_out": 26, "ssim_out": 0.8},
            {"task": "haze", "psnr_in": 10, "ssim_in": 0.4, "psnr_out": 19, "ssim_out": 0.9}]
    rows = {r["task"]: r for r in per_task_table(recs)}
    assert rows["noise"]["n"] == 2 and rows["noise"]["psnr_out"] == pytest.approx(25)
    assert rows["all"]["n"] == 3 and rows["all"]["psnr_in"] == pytest.approx(52 / 3)
    assert "| haze | 1 | 10.00 | 0.4000 | 19.00 | 0.9000 |" in to_markdown(list(rows.values()))
    with write_csv(list(rows.values()), tmp_path / "t.csv").open() as f:
        assert [r["task"] for r in csv.DictReader(f)] == ["noise", "haze", "all"]
