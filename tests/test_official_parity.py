"""benchmarks/official_parity.py: the suite side trains on the shared batches; without a checkout it skips cleanly."""

from __future__ import annotations

import csv
import math

import torch

from benchmarks import official_parity as parity


def test_skips_with_instructions_without_checkout(tmp_path, capsys):
    assert parity.main(["--official", str(tmp_path / "no_checkout"), "--out", str(tmp_path / "out")]) is None
    assert parity.main(["--out", str(tmp_path / "out")]) is None
    text = capsys.readouterr().out
    assert "skipped" in text and "git clone https://github.com/iSEE-Laboratory/DiffUIR" in text
    assert "--official" in text
    assert not (tmp_path / "out").exists()


def test_batches_are_fixed_by_the_seed():
    a = parity.make_batches(["noise"], crop=16, batch=2, steps=2, seed=3)
    b = parity.make_batches(["noise"], crop=16, batch=2, steps=2, seed=3)
    c = parity.make_batches(["noise"], crop=16, batch=2, steps=2, seed=4)
    assert len(a) == 2 and a[0]["gt"].shape == (2, 3, 16, 16) and a[0]["lq"].shape == (2, 3, 16, 16)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in ("gt", "lq", "task"))
    assert not torch.equal(a[0]["gt"], c[0]["gt"])
    assert not torch.equal(a[0]["gt"], a[0]["lq"])  # degraded


def test_suite_side_trains_two_steps(tmp_path):
    out = tmp_path / "parity"
    summary = parity.main(["--suite-only", "--steps", "2", "--chunk", "1", "--batch", "2", "--crop", "32",
                           "--eval-size", "32", "--out", str(out), "--tag", "tiny"])
    loss = summary["loss"]["suite"]
    assert loss["steps"] == 2 and 0 < loss["first"] < 2 and math.isfinite(loss["last_mean"])
    speed = summary["speed"]["suite"]
    assert speed["chunks"] == 2 and speed["median"] > 0
    ev = summary["eval"]["suite"]["ema"]["mean"]
    assert 5 < ev["psnr"] < 60 and 0 < ev["ssim"] <= 1 and ev["psnr_in"] > 5
    rows = list(csv.DictReader((out / "tiny_loss.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2"] and float(rows[0]["suite"]) == round(loss["first"], 6)
    chunks = list(csv.DictReader((out / "tiny_chunks.csv").open()))
    assert [c["side"] for c in chunks] == ["suite", "suite"]
    assert "| PSNR-Y, ema weights |" in (out / "tiny.md").read_text()
