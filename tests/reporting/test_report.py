"""Report tables people read: numeric CSV columns (pandas dtypes), metrics not computed listed once, row notes,
and a report page opening with the summary table and its per-task gain chart beside the paper."""

import math

import pytest

from src.metrics.perceptual import MetricUnavailable
from src.reporting.report import (
    SetResult,
    aggregate,
    set_table_markdown,
    summary_chart,
    summary_figure,
    summary_rows,
    write_per_image_csv,
    write_report,
    write_set_table_csv,
)

pd = pytest.importorskip("pandas")

RECORDS = [
    {"task": "noise", "psnr_in": 20.0, "ssim_in": 0.5, "psnr": 26.0, "ssim": 0.8, "lpips": None, "niqe": None},
    {"task": "noise", "psnr_in": 22.0, "ssim_in": 0.6, "psnr": 28.0, "ssim": 0.9, "lpips": None, "niqe": None},
    {"task": "low_light", "psnr_in": 10.0, "ssim_in": 0.3, "psnr": 19.0, "ssim": 0.7, "lpips": None, "niqe": None},
]
UNAVAILABLE = {"lpips": MetricUnavailable("lpips", reason="no weights: lpips.pth"),
               "niqe": MetricUnavailable("niqe", reason="no weights: niqe.mat")}


def _result():
    metrics = ["psnr", "ssim", "lpips", "niqe"]
    rows = aggregate(RECORDS, metrics)
    for row in rows:
        row["paper_psnr"] = "23.01" if row["task"] == "low_light" else None
        row["paper_ssim"] = "0.880" if row["task"] == "low_light" else None
        row["paper_source"] = "DiffUIR T1" if row["task"] == "low_light" else ""
    rows[0]["notes"] = "FID not computed: 2 images < fid_min_images=10"
    return SetResult("builtin", rows, metrics, paper_metrics=["psnr", "ssim"], notes=["synthetic set"])


def test_csv_columns_are_numbers_and_unavailable_metrics_have_none(tmp_path):
    result = _result()
    table = pd.read_csv(write_set_table_csv(result, UNAVAILABLE, tmp_path / "metrics.csv"))
    assert list(table.columns) == ["task", "n", "psnr_in", "ssim_in", "psnr", "paper_psnr", "ssim", "paper_ssim",
                                   "paper_source", "notes"]
    for column in ("n", "psnr_in", "ssim_in", "psnr", "paper_psnr", "ssim", "paper_ssim"):
        assert pd.api.types.is_numeric_dtype(table[column]), column
    assert table["psnr"].tolist() == pytest.approx([27.0, 19.0, 73 / 3])
    assert math.isnan(table["paper_psnr"][0]) and table["paper_psnr"][1] == pytest.approx(23.01)
    assert table["notes"][0].startswith("FID not computed") and table["notes"].isna()[1:].all()

    per_image = pd.read_csv(write_per_image_csv([{**r, "index": i, "name": f"im{i}"} for i, r in enumerate(RECORDS)],
                                                ["psnr", "ssim", "lpips", "niqe"], tmp_path / "per_image.csv",
                                                UNAVAILABLE))
    assert list(per_image.columns) == ["index", "name", "task", "psnr_in", "ssim_in", "psnr", "ssim"]
    assert all(pd.api.types.is_float_dtype(per_image[c]) for c in ("psnr_in", "psnr", "ssim"))


def test_markdown_lists_each_missing_metric_once():
    md = set_table_markdown(_result(), UNAVAILABLE)
    header = md.splitlines()[2]
    assert "LPIPS" not in header and "NIQE" not in header and "PSNR (Y)" in header
    assert md.count("no weights: lpips.pth") == 1 and md.count("no weights: niqe.mat") == 1
    assert "noise: FID not computed: 2 images < fid_min_images=10" in md and "synthetic set" in md


def test_summary_rows_and_chart(tmp_path):
    rows = summary_rows([_result()], UNAVAILABLE)
    assert [(r["task"], r["n"]) for r in rows] == [("noise", 2), ("low_light", 1), ("all", 3)]
    low = rows[1]
    assert low["psnr_gain"] == pytest.approx(9.0) and low["ssim_gain"] == pytest.approx(0.4)
    assert low["paper_psnr"] == pytest.approx(23.01) and rows[0]["paper_psnr"] is None
    pytest.importorskip("matplotlib")
    from PIL import Image

    path = summary_chart(rows, tmp_path / "chart.png")
    assert Image.open(path).size[0] > 500
    assert summary_chart([], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()

    from src.reporting.plots import pyplot_or_none

    plt = pyplot_or_none("matplotlib")
    fig = summary_figure(rows, plt)
    (psnr_ax, ssim_ax) = fig.axes[:2]
    assert "dB" in psnr_ax.get_ylabel() and "PSNR" in psnr_ax.get_ylabel() and psnr_ax.get_xlabel() == "task"
    assert "SSIM" in ssim_ax.get_ylabel() and "dB" not in ssim_ax.get_ylabel()
    plt.close(fig)


def test_report_opens_with_summary_table_and_chart(tmp_path):
    pytest.importorskip("matplotlib")
    paths = write_report(tmp_path, "demo: evaluation", [_result()], UNAVAILABLE, {"checkpoint": "x.ckpt"})
    page = paths["report_html"].read_text()
    summary = page.index("<table class='summary'>")
    assert summary < page.index("<img class='chart' src='summary.png'") < page.index("<h2>builtin")
    assert "<td>builtin</td><td>low_light</td><td>1</td><td>10.00</td><td>19.00</td><td>+9.00</td><td>23.01</td>" \
        in page
    assert (tmp_path / "summary.png").is_file() and paths["summary_chart"] == tmp_path / "summary.png"
    md = paths["report_md"].read_text()
    assert md.index("## Summary") < md.index("### builtin")
    assert "| builtin | low_light | 1 | 10.00 | 19.00 | +9.00 | 23.01 | 0.3000 | 0.7000 | +0.4000 | 0.880 |" in md


def test_report_lists_metrics_not_computed_once_and_fits_a_phone(tmp_path):
    from src.metrics.perceptual import WeightFile

    weights = tmp_path / "weights" / "pyiqa" / "LPIPS_v0.1_alex-df73285e.pth"
    url = "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/LPIPS_v0.1_alex-df73285e.pth"
    unavailable = {"lpips": MetricUnavailable("lpips", [(WeightFile("pyiqa/LPIPS_v0.1_alex-df73285e.pth", url),
                                                         weights)]),
                   "niqe": MetricUnavailable("niqe", reason="no weights: niqe.mat")}
    paths = write_report(tmp_path, "demo", [_result()], unavailable, {"checkpoint": "x.ckpt"})
    page, md = paths["report_html"].read_text(), paths["report_md"].read_text()
    for text in (page, md):  # one list, one entry per metric, at the end
        assert text.count(str(weights)) == 1 and text.count("no weights: niqe.mat") == 1
        assert text.count("etrics not computed") == 1 and "Not computed:" not in text  # no per-set repeat
    assert page.index("id='not-computed'") > page.index("<h2>builtin")
    assert f"<a href='{url}'>" in page
    # what keeps the page inside a 390 px window: the viewport, tables scrolling in their box, long words wrapping
    assert "name='viewport' content='width=device-width" in page
    assert page.count("<div class='scroll'><table") == 2 and "overflow-wrap:anywhere" in page
