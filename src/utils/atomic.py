"""Atomic file writes: a temporary file beside the target, flushed and fsynced, then renamed over it.

A reader (or a rerun) therefore sees either the old file, or no file, or the complete new one — never a truncated
file, even when the writing process is killed with SIGKILL or the machine loses power after the rename. What a
kill can leave behind is the hidden temporary file (``.<name>.<random>.tmp`` in the same folder), never a partial
``<name>``.

No torch import here: image writing and checkpointing both use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"

# mkstemp creates files with mode 0600; give finished files the permissions a plain open() would (0666 & ~umask)
_UMASK = os.umask(0)
os.umask(_UMASK)


def temporary_name_for(path: str | os.PathLike) -> tuple[str, str]:
    """(prefix, suffix) of the temporary files written for ``path`` (hidden, same folder)."""
    return f".{Path(path).name}.", TEMP_SUFFIX


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


def stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Temporary files left in ``directory`` by writers that were killed (safe to delete once none is running)."""
    return sorted(p for p in Path(directory).glob(f".*{TEMP_SUFFIX}") if p.is_file())
