"""benchmarks/train_speed.py --before: the suite at an older commit as a contender, in a git worktree that is
removed afterwards, with its own recipe and a copy of the step timer on its path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import train_speed

ROOT = Path(__file__).resolve().parents[1]


def _head() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout: --before needs the repository's history")
    return done.stdout.strip()


def test_before_adds_a_worktree_contender_and_removes_it(tmp_path, monkeypatch):
    monkeypatch.setattr(train_speed, "CONTENDERS", dict(train_speed.CONTENDERS))
    monkeypatch.setattr(train_speed, "GLOBAL_BATCH", dict(train_speed.GLOBAL_BATCH))
    monkeypatch.setattr(train_speed, "WHERE", {})
    commit = _head()
    name = train_speed.add_before(commit, tmp_path, 8)
    try:
        assert name == f"before@{commit[:7]}"
        tree, path, timer = train_speed.WHERE[name]
        assert (tree / "src" / "train.py").is_file()  # the old checkout, run from its own root
        assert train_speed.CONTENDERS[name] == [] and train_speed.GLOBAL_BATCH[name] == 8  # its own recipe
        assert timer == "uir_step_timer.StepTimer" and (Path(path) / "uir_step_timer.py").is_file()
        assert "from src" not in (Path(path) / "uir_step_timer.py").read_text()  # nothing of today's suite
    finally:
        train_speed.remove_before(tmp_path)
    assert not (tmp_path / "before").exists()
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in listed


def test_before_names_an_unknown_commit(tmp_path):
    _head()
    with pytest.raises(SystemExit, match="git worktree add failed"):
        train_speed.add_before("0" * 40, tmp_path, 8)


def test_breakdown_times_every_part_of_a_demo_step(tmp_path):
    """--breakdown: the demo's own data, model and optimizer; every part timed, the top operators."""
    assert train_speed.main(["--breakdown", "--steps", "2", "--warmup", "1", "--out", str(tmp_path / "t")]) == 0
    md = (tmp_path / "t_breakdown.md").read_text()
    for part in train_speed.PARTS:
        assert f"| {part} | " in md
    assert "batch 4×3×64×64 per process" in md and "1 torch thread(s)" in md and "| `aten::" in md
