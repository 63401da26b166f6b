"""The suite as it was at an earlier commit, beside today's: a detached ``git worktree`` for before/after benchmarks
(``benchmarks.train_speed --before``, ``benchmarks.photo_speed --before``), so that both run in one alternated run."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def checkout(commit: str, tree: Path, flag: str = "--before") -> Path:
    """A detached worktree of ``commit`` at ``tree`` (removed with :func:`remove`); exits with a clear message when
    git cannot make it (``flag``: the option that asked for it)."""
    done = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{flag} {commit}: git worktree add failed ({done.stderr.strip()[-300:]}); a shallow "
                         "clone lacks old commits: git fetch --unshallow")
    return tree


def remove(tree: Path) -> None:
    """Remove a worktree made by :func:`checkout` (nothing if it is not there)."""
    if tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
