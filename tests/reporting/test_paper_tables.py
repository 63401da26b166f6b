"""The papers' tables as data: complete, loadable, and (where the paper text is at hand) equal to the text."""

import re
from collections import defaultdict
from pathlib import Path

import pytest

from src.metrics.registry import METRICS
from src.reporting.paper_tables import (
    PAPER_TABLES_DIR,
    diffuir_method_for,
    load_paper_tables,
    paper_value,
    paper_values,
)

PAPERS = Path("/work/shared/papers")
EXPECTED_FILES = {f"diffuir_table{i}.csv" for i in range(1, 6)} | {f"diff_restorer_table{i}.csv" for i in range(1, 6)}
# numbers per table (cells printed as "-" have no row)
EXPECTED_COUNTS = {("DiffUIR", "1"): 182, ("DiffUIR", "2"): 40, ("DiffUIR", "3"): 60, ("DiffUIR", "4"): 96,
                   ("DiffUIR", "5"): 50, ("Diff-Restorer", "I"): 648, ("Diff-Restorer", "II"): 16,
                   ("Diff-Restorer", "III"): 20, ("Diff-Restorer", "IV"): 20, ("Diff-Restorer", "V"): 16}


def test_every_table_is_there_with_all_its_numbers():
    assert {p.name for p in PAPER_TABLES_DIR.glob("*.csv")} == EXPECTED_FILES
    counts = defaultdict(int)
    for v in load_paper_tables():
        counts[(v.paper, v.table)] += 1
        assert v.metric_key in METRICS or v.metric_key in ("params_m", "flops_g"), v
    assert dict(counts) == EXPECTED_COUNTS


def test_lookups_return_the_printed_numbers():
    assert paper_value("DiffUIR-L(ours)", "rain", "psnr", table="1").value == "31.03"
    assert paper_value("DiffUIR-T(ours)", "low_light", "ssim", table="1").number == pytest.approx(0.880)
    assert paper_value("DiffUIR(ours)", "low_light", "loe", table="5").value == "193.40"
    assert paper_value("Ours", "noise", "fid", paper="Diff-Restorer").value == "35.32"
    assert paper_value("Ours", "jpeg", "clipiqa", paper="Diff-Restorer").value == "0.6825"
    assert paper_value("DiffUIR-T(ours)", "noise", "psnr") is None  # DiffUIR has no denoising column
    toled = paper_values(paper="DiffUIR", table="4", method="DiffUIR(ours)", dataset="TOLED")
    assert {v.metric_key: v.value for v in toled} == {"psnr_rgb": "29.55", "ssim_rgb": "0.887", "lpips": "0.281"}
    haze = paper_values(paper="Diff-Restorer", table="I", method="Ours", dataset="Real-world: Haze")
    assert {v.metric for v in haze} == {"NIQE", "MUSIQ", "CLIPIQA"}  # FID/LPIPS/DISTS printed as "-"


def test_suite_sizes_map_to_table1_rows():
    assert diffuir_method_for("T") == "DiffUIR-T(ours)" and diffuir_method_for("L") == "DiffUIR-L(ours)"
    assert diffuir_method_for(None) is None and diffuir_method_for("XL") is None


def _fmt(values):
    return " ".join(values)


@pytest.mark.skipif(not (PAPERS / "diffuir.txt").is_file(), reason="paper text not available")
def test_diffuir_rows_match_the_paper_text_line_by_line():
    """Rebuild each printed row (values in column order, '-' where no number) and find it in the paper's text."""
    text = (PAPERS / "diffuir.txt").read_text()
    columns = defaultdict(list)  # table -> ordered (dataset, metric) columns, in first-seen order
    rows = defaultdict(dict)
    for v in load_paper_tables():
        if v.paper != "DiffUIR":
            continue
        col = (v.dataset, v.metric)
        if col not in columns[v.table]:
            columns[v.table].append(col)
        rows[(v.table, v.group, v.method)][col] = v.value
    order = {"1": [(d, m) for d in ("Deraining (5sets)", "Enhancement", "Desnowing (2sets)", "Dehazing", "Deblurring")
                   for m in ("PSNR", "SSIM")] + [("Complexity", "Params (M)"), ("Complexity", "FLOPS (G)")]}
    order["2"] = order["3"] = order["1"][:10]
    order["4"] = [(d, m) for d in ("TOLED", "POLED") for m in ("PSNR", "SSIM", "LPIPS")]
    order["5"] = [("Deraining", "NIQE"), ("Deraining", "LOE"), ("Enhancement", "NIQE"), ("Enhancement", "LOE"),
                  ("Desnowing", "NIQE"), ("Desnowing", "IL-NIQE"), ("Deblurring", "PSNR"), ("Deblurring", "SSIM")]
    for (table, _group, method), cells in rows.items():
        assert set(cells) <= set(order[table])
        printed = _fmt(cells.get(col, "-") for col in order[table])
        label = re.escape(method.replace("Uni ratio ", "").replace("†", "")).replace(r"\ ", " ")
        pattern = rf"^{label}(?: \[\d+\])?†?(?: \S+){{0,2}} {re.escape(printed)}$"
        assert re.search(pattern, text, re.M), f"Table {table} row {method!r}: {printed!r} not in the paper text"


@pytest.mark.skipif(not (PAPERS / "diff_restorer.txt").is_file(), reason="paper text not available")
def test_diff_restorer_rows_match_the_paper_text():
    text = (PAPERS / "diff_restorer.txt").read_text()
    rows = defaultdict(dict)
    for v in load_paper_tables():
        if v.paper == "Diff-Restorer":
            rows[(v.table, v.dataset, v.method)][v.metric] = v.value
    for (table, dataset, method), cells in rows.items():
        metrics = ("FID", "LPIPS", "DISTS", "NIQE", "MUSIQ", "CLIPIQA") if table == "I" else ("FID", "LPIPS", "DISTS",
                                                                                            "NIQE")
        printed = _fmt(cells.get(m, "-") for m in metrics)
        assert re.search(rf"{re.escape(method)}(?: \[\d+\])?\s*{re.escape(printed)}", text), (table, dataset, method)
