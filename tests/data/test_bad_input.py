"""Bad input is a clear error naming the file and what was expected, raised when a manifest is built or validated:
missing / unreadable / truncated files, LQ/GT size mismatches, unpaired names, grayscale / RGBA / 16-bit images.
The explicit ``on_error="skip"`` opt-in logs and counts each bad sample instead."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.data.datasets import DiffUIRTrainDataset, EvalDataset
from src.data.image_io import ImageProblem, probe_image, read_image
from src.data.manifests import (
    ManifestError,
    Row,
    build_manifests,
    check_rows,
    main,
    read_manifest,
    validate_manifest,
    write_manifest,
)

RNG = np.random.default_rng(0)


def rgb(path: Path, size=(16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def png16_rgb(path: Path, size=(16, 12)) -> Path:
    """A 16-bit RGB PNG written by hand (PIL would silently read it as 8-bit RGB)."""
    w, h = size
    arr = RNG.integers(0, 65536, (h, w, 3)).astype(">u2")
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def bad(tmp_path):
    """One file per bad-input case, plus a good pair."""
    d = tmp_path / "data"
    rgb(d / "good" / "lq.png")
    rgb(d / "good" / "gt.png")
    (d / "x").mkdir(parents=True)
    (d / "x" / "not_image.png").write_text("hello")
    full = rgb(d / "x" / "full.png", (64, 64))
    (d / "x" / "truncated.png").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    rgb(d / "x" / "big.png", (20, 12))
    Image.fromarray(RNG.integers(0, 256, (12, 16), dtype=np.uint8)).save(d / "x" / "gray.png")
    Image.fromarray(RNG.integers(0, 256, (12, 16, 4), dtype=np.uint8)).save(d / "x" / "rgba.png")
    Image.fromarray(RNG.integers(0, 65536, (12, 16), dtype=np.uint16)).save(d / "x" / "gray16.png")
    png16_rgb(d / "x" / "rgb16.png")
    return d


CASES = {  # lq file -> (kind, words in the message)
    "x/missing.png": ("missing", "no such file"),
    "x/not_image.png": ("unreadable", "not an image (or a format Pillow cannot read)"),
    "x/big.png": ("size_mismatch", "LQ is 20×12 but its GT good/gt.png is 16×12"),
    "x/gray.png": ("mode", "grayscale image (mode L)"),
    "x/rgba.png": ("mode", "alpha channel (mode RGBA)"),
    "x/gray16.png": ("mode", "16-bit grayscale image"),
    "x/rgb16.png": ("mode", "16-bit colour image"),
}


@pytest.mark.parametrize("lq", list(CASES))
def test_each_case_names_the_file_the_problem_and_the_expectation(bad, lq):
    kind, words = CASES[lq]
    rows = [Row(lq, "good/gt.png", "haze", "X")]
    with pytest.raises(ManifestError) as e:
        check_rows(rows, bad, level="header")
    msg = str(e.value)
    assert e.value.problems[0].kind == kind
    assert str(bad / lq) in msg and words in msg and "expected" in msg


def test_truncated_image_is_found_by_full_validation(bad, tmp_path):
    rows = [Row("x/truncated.png", None, "haze", "X")]
    assert check_rows(rows, bad, level="header").rows == rows  # the header is intact
    with pytest.raises(ManifestError, match=r"truncated\.png: lq: cannot be decoded \(truncated or corrupt\).*"
                                            r"expected a complete"):
        check_rows(rows, bad, level="full")
    with pytest.raises(ImageProblem, match="truncated or corrupt"):
        read_image(bad / "x" / "truncated.png")


def test_all_bad_rows_are_listed_in_one_error(bad, tmp_path):
    rows = [Row("good/lq.png", "good/gt.png", "haze", "X")] + [Row(lq, "good/gt.png", "haze", "X") for lq in CASES]
    rows.append(Row("x/truncated.png", None, "haze", "X"))
    m = write_manifest(rows, tmp_path / "m.csv")
    with pytest.raises(ManifestError) as e:
        validate_manifest(m, bad)
    assert len(e.value.problems) == len(CASES) + 1
    assert all(str(bad / lq) in str(e.value) for lq in CASES) and f"{m} line 10: " in str(e.value)
    assert main(["validate", str(m), "--data-root", str(bad)]) == 1


def test_skip_opt_in_logs_and_counts(bad, tmp_path, caplog):
    rows = [Row("good/lq.png", "good/gt.png", "haze", "X")] + [Row(lq, "good/gt.png", "haze", "X") for lq in CASES]
    m = write_manifest(rows, tmp_path / "m.csv")
    with caplog.at_level(logging.WARNING, logger="src.data.manifests"):
        rep = validate_manifest(m, bad, on_error="skip")
    assert rep.rows == rows[:1] and rep.n_skipped == len(CASES)
    assert rep.skipped == {"missing": 1, "unreadable": 1, "size_mismatch": 1, "mode": 4}
    assert sum("skipping bad sample" in r.message for r in caplog.records) == len(CASES)
    assert any("dropped 7 row(s) with problems (7 problem(s)" in r.message for r in caplog.records)


def test_skip_counts_rows_not_problems(bad, tmp_path, capsys):
    """A row with a bad LQ and a bad GT is one dropped row (two problems)."""
    rows = [Row("good/lq.png", "good/gt.png", "haze", "X"), Row("x/missing.png", "x/not_image.png", "haze", "X")]
    m = write_manifest(rows, tmp_path / "m.csv")
    rep = validate_manifest(m, bad, on_error="skip")
    assert rep.n_skipped == 1 and len(rep.problems) == 2 and rep.skipped == {"missing": 1, "unreadable": 1}
    assert main(["validate", str(m), "--data-root", str(bad), "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "1 rows OK (full check), dropped 1 bad row(s) (problems: missing: 1, unreadable: 1)" in out


def test_convert_opt_in_accepts_gray_rgba_and_16_bit(bad):
    for name in ("gray", "rgba", "gray16", "rgb16"):
        path = bad / "x" / f"{name}.png"
        with pytest.raises(ImageProblem, match="convert=True"):
            probe_image(path)
        assert probe_image(path, convert=True).size == (16, 12)
        arr = read_image(path, convert=True)
        assert arr.shape == (12, 16, 3) and arr.dtype == np.uint8
    g16 = np.asarray(Image.open(bad / "x" / "gray16.png"), dtype=np.float64)
    assert np.array_equal(read_image(bad / "x" / "gray16.png", convert=True)[..., 0], np.round(g16 / 257))
    rows = [Row("x/gray.png", "x/rgba.png", "haze", "X")]
    assert check_rows(rows, bad, level="full", convert=True).rows == rows


def test_unpaired_names_fail_the_build(tmp_path):
    d = tmp_path / "data" / "LOL" / "our485"
    for n in ("1", "2", "3"):
        rgb(d / "low" / f"{n}.png")
    for n in ("1", "2", "4"):
        rgb(d / "high" / f"{n}.png")
    rgb(d / "high" / "1.jpg")  # a second reference for the same name
    rgb(d.parent / "eval15" / "low" / "1.png")
    rgb(d.parent / "eval15" / "high" / "1.png")
    with pytest.raises(ManifestError) as e:
        build_manifests("lol", d.parent, out_dir=tmp_path / "m")
    msg = str(e.value)
    assert "unpaired LQ image: no GT image named '3'" in msg and str(d / "low" / "3.png") in msg
    assert "unpaired GT image" in msg and str(d / "high" / "4.png") in msg
    assert "second GT image for key '1'" in msg
    assert not (tmp_path / "m").exists()  # nothing written
    out = build_manifests("lol", d.parent, out_dir=tmp_path / "m", on_error="skip")
    assert [r.lq for r in out.splits["train"]] == ["LOL/our485/low/2.png"]  # '1' ambiguous, '3' unpaired
    assert out.skipped == {"unpaired": 2, "ambiguous": 1} and out.dropped_rows == 0
    assert "left out 3 file(s) that could not be paired (ambiguous: 1, unpaired: 2)" in out.report()
    assert "dropped" not in out.report()  # files that could not be paired are not rows


def test_unexpected_names_and_bad_images_fail_the_build(tmp_path):
    r = tmp_path / "data" / "Raindrop" / "train"
    rgb(r / "data" / "0_rain.png")
    rgb(r / "gt" / "0_clean.png", (20, 12))  # size mismatch
    rgb(r / "data" / "1.png")  # no _rain suffix
    rgb(r / "gt" / "1_clean.png")
    with pytest.raises(ManifestError) as e:
        build_manifests("raindrop", r.parent, out_dir=None, skip_missing=True)  # no test_a split
    kinds = sorted(p.kind for p in e.value.problems)
    assert kinds == ["name", "size_mismatch", "unpaired"]
    assert "expected <n>_rain.<ext>" in str(e.value)


def test_malformed_manifests(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("lq,gt,label,source\n")
    with pytest.raises(ManifestError, match="header"):
        read_manifest(p)
    p.write_text("lq,gt,task,source\na.png,b.png,fog,X\na.png,b.png,haze\n,,haze,X\n/abs.png,,haze,X\n"
                 ",b.png,noise+blur,X\nc.png,,snow+noise,Mixed\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(p)
    assert len(e.value.problems) == 5 and "m.csv line 2" in str(e.value) and "task 'fog'" in str(e.value)
    assert read_manifest(p, on_error="skip") == [Row("c.png", None, "snow+noise", "Mixed")]
    with pytest.raises(FileNotFoundError, match="python -m src.data.manifests build"):
        read_manifest(tmp_path / "nope.csv")


def test_runtime_errors_name_the_file_and_the_manifest_row(bad, tmp_path):
    m = write_manifest([Row("good/lq.png", "good/gt.png", "haze", "X"), Row("x/missing.png", "good/gt.png", "haze",
                                                                             "X")], tmp_path / "m.csv")
    ds = DiffUIRTrainDataset(read_manifest(m), bad, patch_size=8)
    with pytest.raises(ImageProblem, match=rf"^{m} line 3: {bad / 'x' / 'missing.png'}: no such file") as e:
        ds[1]
    assert e.value.where == f"{m} line 3" and e.value.kind == "missing"
    ev = EvalDataset([Row("x/big.png", "good/gt.png", "haze", "X")], bad)
    with pytest.raises(ImageProblem, match="dataset row 1: .*LQ is 20×12"):
        ev[0]
    ev = EvalDataset([Row("x/big.png", "good/gt.png", "haze", "SOTS-outdoor")], bad)  # documented exception
    assert ev[0]["gt"].shape == ev[0]["lq"].shape == (3, 12, 20)
    with pytest.raises(ValueError, match="evaluation datasets do not substitute"):
        EvalDataset([Row("good/lq.png", None, "haze", "X")], bad, on_bad_sample="skip")
