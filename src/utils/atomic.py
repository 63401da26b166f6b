"""Atomic file writes: a temporary file beside the target, flushed and fsynced, then renamed over it.

A reader (or a rerun) therefore sees either the old file, or no file, or the complete new one — never a truncated
file, even when the writing process is killed with SIGKILL or the machine loses power after the rename. What a
kill can leave behind is the hidden temporary file (``.<name>.uir-<pid>-<random>.tmp`` in the same folder), never a
partial ``<name>``. The ``uir-<pid>`` marker is the suite's and records the writing process: cleanup removes only
files with that marker whose process is gone, never another program's ``.<name>.<random>.tmp``, and never through
a symbolic link (:func:`remove_stale_temporaries`, :func:`check_inside`).

No torch import here: image writing and checkpointing both use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"
TEMP_MARKER = "uir"  # ".<name>.uir-<pid>-<random>.tmp": the suite's temporaries, and which process wrote them

# mkstemp creates files with mode 0600; give finished files the permissions a plain open() would (0666 & ~umask)
_UMASK = os.umask(0)
os.umask(_UMASK)


def temporary_name_for(path: str | os.PathLike) -> tuple[str, str]:
    """(prefix, suffix) of the temporary files this process writes for ``path`` (hidden, same folder, marked)."""
    return f".{Path(path).name}.{TEMP_MARKER}-{os.getpid()}-", TEMP_SUFFIX


def _fsync_dir(directory: Path) -> None:
    """Persist a rename (POSIX; a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, overwrite: bool = True, fsync: bool = True,
                encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit it replaces ``path`` in one rename.

    ``overwrite=False`` never replaces an existing ``path``: it raises :class:`FileExistsError` instead (checked
    atomically with a hard link where the file system supports one). On an exception inside the block the
    temporary file is removed and ``path`` is untouched. The parent folder must exist.
    """
    if not any(c in mode for c in "wx") or "+" in mode:
        raise ValueError(f"atomic_open writes new files only; got mode {mode!r}")
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists (not overwriting)")
    prefix, suffix = temporary_name_for(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, mode.replace("x", "w"), encoding=encoding) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        if overwrite:
            os.replace(tmp, path)
        else:
            _rename_no_clobber(tmp, path)
        if fsync:
            _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _rename_no_clobber(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (a hard link fails atomically if it does)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} exists (not overwriting)") from None
    except OSError:  # no hard links on this file system: check, then rename (a small race, documented)
        if path.exists():
            raise FileExistsError(f"{path} exists (not overwriting)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb", overwrite=overwrite, fsync=fsync) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "w", overwrite=overwrite, encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


# what mkstemp makes of temporary_name_for(): ".<name>.uir-<pid>-" + 8 random characters + ".tmp"
_TEMP_NAME = re.compile(r"^\..+\." + TEMP_MARKER + r"-(\d+)-[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$")
STALE_AFTER_S = 30.0  # a temporary file untouched this long is not being written (writes update its mtime)


def _writer_alive(pid: int) -> bool:
    """Whether process ``pid`` (recorded in a temporary's name) still runs here (then it may still be writing)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """True if ``path`` lies in folder ``root`` without passing through a symbolic link below ``root`` (so that
    writing or deleting there cannot reach outside ``root``)."""
    root, path = Path(os.path.abspath(root)), Path(os.path.abspath(path))
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    here = root
    for part in parts:
        here = here / part
        if here.is_symlink():
            return False
    return True


def check_inside(root: str | os.PathLike, path: str | os.PathLike, what: str = "output") -> None:
    """Refuse (:class:`ValueError`, one line) an ``what`` path that would be written through a symbolic link below
    ``root`` (e.g. ``--out``) or outside it."""
    if not inside(root, path):
        raise ValueError(f"{what} {path} is refused: it is not inside {root} or passes through a symbolic link "
                         f"there (the suite writes only inside {root})")


def check_writable_folder(path: str | os.PathLike, what: str = "--out") -> None:
    """Refuse (:class:`ValueError`, one line naming the path) a folder to write into that is a file, lies under a
    file, or whose nearest existing folder cannot be written (permissions, a read-only mount)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} exists and is a file, not a folder")
    here = path
    while not here.exists():
        if here.is_symlink():
            raise ValueError(f"{what} {path}: {here} is a broken symbolic link")
        here = here.parent
    if not here.is_dir():
        raise ValueError(f"{what} {path} cannot be created: {here} is a file, not a folder")
    if not os.access(here, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path} cannot be written: {here} is not writable (permissions or a read-only disk)")


def one_line(error: BaseException, limit: int = 400) -> str:
    """An exception as one line for ``error: ...`` messages: its lines joined with "; ", at most ``limit``
    characters."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror + (f": {error.filename}" if error.filename else "")
    elif error.args and isinstance(error.args[0], str):
        text = error.args[0]  # a KeyError's message without the quotes str() adds
    else:
        text = str(error)
    text = "; ".join(line.strip() for line in text.strip().splitlines() if line.strip()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stale_temporaries(directory: str | os.PathLike, min_age_s: float = 0.0) -> list[Path]:
    """The suite's temporary files (:func:`atomic_open`'s marked names) in ``directory`` (not its sub-folders, not
    through a symbolic link) untouched for ``min_age_s`` seconds: what a killed writer leaves behind. Other hidden
    ``*.tmp`` files (another program's ``.<name>.<random>.tmp``) are never matched."""
    directory = Path(directory)
    if directory.is_symlink() or not directory.is_dir():
        return []
    now = time.time()
    found = []
    for p in directory.iterdir():
        if _TEMP_NAME.match(p.name) and p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                if now - p.stat().st_mtime >= min_age_s:
                    found.append(p)
    return sorted(found)


def remove_stale_temporaries(directories, min_age_s: float = STALE_AFTER_S,
                             within: str | os.PathLike | None = None) -> tuple[list[Path], list[Path]]:
    """Delete the leftover temporaries of killed writers in ``directories``; returns (removed, kept) where kept are
    younger than ``min_age_s`` or recorded as written by a process still running (it may still be writing them).

    ``within`` (e.g. ``--out``): folders outside it, or reached through a symbolic link below it, are skipped."""
    removed, kept = [], []
    for directory in dict.fromkeys(Path(d) for d in directories):
        if within is not None and not inside(within, directory):
            continue
        old = set(stale_temporaries(directory, min_age_s))
        for p in stale_temporaries(directory):
            if p in old and not _writer_alive(int(_TEMP_NAME.match(p.name).group(1))):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
            else:
                kept.append(p)
    return removed, kept


def describe_cleanup(removed: list[Path], kept: list[Path]) -> str | None:
    """The line a run prints after :func:`remove_stale_temporaries` (None when there was nothing)."""
    if not removed and not kept:
        return None
    parts = []
    if removed:
        names = ", ".join(str(p) for p in removed[:3]) + (", ..." if len(removed) > 3 else "")
        parts.append(f"removed {len(removed)} leftover temporary file(s) of an interrupted run: {names}")
    if kept:
        parts.append(f"left {len(kept)} recent temporary file(s) (younger than {STALE_AFTER_S:.0f} s or of a running "
                     f"process: another run may be writing them), e.g. {kept[0]}")
    return "; ".join(parts)
