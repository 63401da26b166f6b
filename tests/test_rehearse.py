"""The paper-scale rehearsal driver (benchmarks/rehearse.py) on tiny sizes: fake trees, fake SD weights in both
layouts, train → validate → checkpoint → resume in a new process → one test image, with per-process probes."""

from __future__ import annotations

import json

import pytest

from benchmarks.rehearse import hydra_value, main


def test_hydra_value_writes_override_grammar():
    assert hydra_value({"a": [1, "x y"], "b": {"c": None, "d": True}}) == "{a:[1,'x y'],b:{c:null,d:true}}"


def _check(rows, names):
    assert [r["experiment"] for r in rows] == names
    for r in rows:
        assert r["ok"], r
        assert r["ckpt_bytes"] > 0 and all(b > 50e6 for b in r["rss_train"])  # bytes of a real Python+torch process
        assert r["trainable"] > 0 and r["frozen"] >= 0


def test_rehearsal_driver_on_a_tiny_diffuir(tmp_path):
    main(["--tiny", "--experiments", "diffuir_t", "--no-ddp", "--work", str(tmp_path), "--threads", "1",
          "--out", str(tmp_path / "rehearsal.md")])
    rows = json.loads((tmp_path / "rehearsal.json").read_text())["rows"]
    _check(rows, ["diffuir_t"])
    assert rows[0]["resumed_to"] == 3 and len(rows[0]["step_s"]) == 2  # 2 steps, then 1 more after the resume
    assert "| diffuir_t | yes |" in (tmp_path / "rehearsal.md").read_text()
    assert "`data.batch_size=1` per process" in (tmp_path / "rehearsal.md").read_text()

    # --merge: a report written by an invocation that reruns only some experiments keeps the others' rows, marked
    earlier = json.loads((tmp_path / "rehearsal.json").read_text())
    earlier["results"][0]["experiment"] = "diffuir_s"  # as if an earlier run had rehearsed DiffUIR-S
    (tmp_path / "rehearsal.json").write_text(json.dumps(earlier))
    main(["--tiny", "--experiments", "diffuir_t", "--no-ddp", "--work", str(tmp_path), "--threads", "1",
          "--out", str(tmp_path / "rehearsal.md"), "--merge"])
    report = (tmp_path / "rehearsal.md").read_text()
    assert "| diffuir_s ¹ | yes |" in report and "| diffuir_t | yes |" in report
    assert f"¹ from the earlier invocation {earlier['invocation']}" in report


@pytest.mark.slow
def test_rehearsal_driver_on_every_experiment_tiny_with_ddp(tmp_path):
    main(["--tiny", "--work", str(tmp_path), "--threads", "1", "--out", str(tmp_path / "rehearsal.md"),
          "--experiments", "diffuir_t,diff_restorer_stage1,diff_restorer_stage2"])
    report = json.loads((tmp_path / "rehearsal.json").read_text())
    _check(report["rows"], ["diffuir_t", "diffuir_t (ddp_cpu ×2)", "diff_restorer_stage1", "diff_restorer_stage2"])
    assert len(report["rows"][1]["rss_train"]) == 2  # one record per DDP process
    assert all(v["identical"] for v in report["weights"]["layouts_identical"].values())
