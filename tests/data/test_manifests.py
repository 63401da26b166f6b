"""Manifest format, reading / writing, check levels, counts and the `python -m src.data.manifests` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.data.manifests import (
    MANIFEST_COLUMNS,
    Row,
    check_rows,
    default_data_root,
    format_counts,
    main,
    parse_task,
    read_manifest,
    task_label,
    validate_manifest,
    write_manifest,
)
from src.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]


def rgb(path: Path, size=(10, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_format_round_trip(tmp_path):
    rows = [Row("LOL/our485/low/1.png", "LOL/our485/high/1.png", "low_light", "LOL"),
            Row("RTTS/JPEGImages/a, b.png", None, "haze", "RTTS"),  # comma in a name: quoted by the CSV writer
            Row(None, "DIV2K/DIV2K_train_HR/0001.png", "noise", "DIV2K"),
            Row("syn/x.png", "DIV2K/DIV2K_valid_HR/0801.png", "raindrop+noise+blur", "Raindrop+Noise+Blur"),
            Row("Toled/LQ/1.png", "Toled/HQ/1.png", "unknown", "TOLED")]
    p = write_manifest(rows, tmp_path / "sub" / "m.csv")
    assert p.read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS) == "lq,gt,task,source"
    assert p.read_text().splitlines()[3] == ",DIV2K/DIV2K_train_HR/0001.png,noise,DIV2K"
    back = read_manifest(p)
    assert back == rows
    assert [r.has_gt for r in back] == [True, False, True, True, True]
    assert [r.synthetic for r in back] == [False, False, True, False, False]


def test_task_field_and_labels():
    assert parse_task("noise") == ("noise",)
    assert parse_task("snow+noise") == ("snow", "noise")
    assert parse_task("unknown") == ("unknown",)
    for bad in ("fog", "noise+", "unknown+noise", ""):
        with pytest.raises(ValueError, match="expected one of"):
            parse_task(bad)
    assert task_label("raindrop+noise+blur") == TASKS.index("raindrop")
    assert task_label("unknown") == TASKS.index("blur") and task_label("unknown", "low_light") == 1


def test_check_levels(tmp_path):
    rgb(tmp_path / "a.png")
    rgb(tmp_path / "b.png")
    rows = [Row("a.png", "b.png", "haze", "X")]
    for level in ("none", "exists", "header", "full"):
        assert check_rows(rows, tmp_path, level=level).rows == rows
    missing = [Row("a.png", "zz.png", "haze", "X")]
    assert check_rows(missing, tmp_path, level="none").rows == missing
    with pytest.raises(ValueError, match="level='fast'"):
        check_rows(rows, tmp_path, level="fast")
    many = [Row("a.png", "b.png", "haze", "X")] * 50  # threads, shared files checked once
    assert len(check_rows(many, tmp_path, level="full", jobs=4).rows) == 50


def test_counts_report():
    rows = [Row("a", "b", "haze", "RESIDE-OTS"), Row("c", "b", "haze", "RESIDE-OTS"), Row("d", None, "haze", "RTTS"),
            Row(None, "e", "noise", "DIV2K")]
    text = format_counts({"train": rows[:2], "test": rows[2:]})
    assert "train" in text and "haze: 2" in text and "no reference: 1" in text and "synthesised LQ: 1" in text


def test_default_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("UIR_DATA", raising=False)
    assert default_data_root(tmp_path / "LOL") == tmp_path
    monkeypatch.setenv("UIR_DATA", str(tmp_path.parent))
    assert default_data_root(tmp_path / "LOL") == tmp_path.parent
    monkeypatch.setenv("UIR_DATA", "/somewhere/else")
    assert default_data_root(tmp_path / "LOL") == tmp_path


def test_cli_build_validate_counts_list(tmp_path, capsys):
    data = tmp_path / "data"
    for split in ("our485", "eval15"):
        for side in ("low", "high"):
            for n in ("1", "2"):
                rgb(data / "LOL" / split / side / f"{n}.png")
    out = tmp_path / "manifests"
    assert main(["build", "lol", "--root", str(data / "LOL"), "--out", str(out), "--check", "full"]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "low_light: 2" in text and "lol_train.csv" in text
    assert sorted(p.name for p in out.iterdir()) == ["lol_test.csv", "lol_train.csv"]
    assert main(["validate", str(out / "lol_train.csv"), "--data-root", str(data)]) == 0
    assert "2 rows OK (full check)" in capsys.readouterr().out
    assert validate_manifest(out / "lol_test.csv", data).rows[0].lq == "LOL/eval15/low/1.png"
    assert main(["counts", str(out / "lol_train.csv"), str(out / "lol_test.csv")]) == 0
    assert "lol_test" in capsys.readouterr().out
    assert main(["list"]) == 0 and "our485" in capsys.readouterr().out
    assert main(["build", "nope", "--root", str(data)]) == 2
    assert "no dataset builder 'nope'" in capsys.readouterr().err


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "src.data.manifests", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "build" in r.stdout and "validate" in r.stdout


def test_readme_documents_the_format_and_every_builder():
    from src.data.builders import BUILDERS

    text = (ROOT / "data_manifests" / "README.md").read_text()
    assert "lq,gt,task,source" in text
    for name in BUILDERS:
        assert f"`{name}`" in text, name
