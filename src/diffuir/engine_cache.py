"""What a second restoration with the same weights need not redo: the ONNX export of the network, OpenVINO's
compiled models and the ``--precision auto`` check (:func:`src.diffuir.engines.select_engine`).

Measured on the 2-core Zen 4 host (``benchmarks/photo_speed.py`` and the test of this module): the first run of
``python -m src.restore`` spends seconds exporting the folded network to ONNX, compiling it once per image shape,
and running the bf16-against-fp32 check; with this cache a later run of the same weights reads the export, loads
OpenVINO's compiled blobs (its own ``CACHE_DIR`` mechanism) and reuses the check's PSNR.

The folder is ``$UIR_CACHE_DIR`` if set (``off`` disables the cache; the test suite runs with it off), else
``$XDG_CACHE_HOME/uir-suite``, else ``~/.cache/uir-suite``. Everything in it is keyed by :func:`network_key`: a
SHA-256 of the network's weights (names, shapes, dtypes and values) and of the code that builds the export (the
source files of :mod:`src.diffuir`, the ONNX opset, the torch version), so new weights or a changed suite never
meet a stale entry. An export is used only if its bytes still hash to the digest written beside it. The cache
holds data only (an ONNX graph, compiled kernels, numbers in JSON), nothing Python would run; delete the folder at
any time. A folder that cannot be written is reported once and the run goes on without it (it changes how long a
run takes, never what it computes).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

FORMAT = 1  # bump when the meaning of a cached file changes
_SOURCES = Path(__file__).resolve().parent
_warned: set[str] = set()


def cache_dir() -> Path | None:
    """The cache folder (not created here), or None when ``UIR_CACHE_DIR=off``."""
    chosen = os.environ.get("UIR_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("off", "0", "none", "") else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "uir-suite"


def _code_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(_SOURCES.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def network_key(net: nn.Module, *extra: object) -> str:
    """SHA-256 (hex) of ``net``'s state dict (names, dtypes, shapes, values), its class, the code of
    :mod:`src.diffuir`, torch's version, :data:`FORMAT` and ``extra`` (e.g. the opset)."""
    digest = hashlib.sha256(f"{FORMAT}|{type(net).__qualname__}|{torch.__version__}|{extra}|{_code_digest()}".encode())
    for name, tensor in net.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _warn_once(problem: str) -> None:
    if problem not in _warned:
        _warned.add(problem)
        warnings.warn(f"uir-suite cache: {problem}; going on without it (set UIR_CACHE_DIR to a writable folder, or "
                      "UIR_CACHE_DIR=off)", RuntimeWarning, stacklevel=3)


def _write(path: Path, data: bytes) -> bool:
    from src.utils.atomic import atomic_write_bytes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data, fsync=False)
        return True
    except OSError as e:
        _warn_once(f"cannot write {path}: {e.strerror or e}")
        return False


def cached_onnx(key: str, export: Callable[[], bytes]) -> bytes:
    """The ONNX bytes cached under ``key``, or ``export()``'s (then cached). A file whose SHA-256 differs from the
    digest written beside it is ignored and rewritten."""
    root = cache_dir()
    if root is None:
        return export()
    path, digest_path = root / "onnx" / f"{key}.onnx", root / "onnx" / f"{key}.sha256"
    try:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == digest_path.read_text().strip():
            return data
    except OSError:
        pass
    data = export()
    if _write(path, data):
        _write(digest_path, hashlib.sha256(data).hexdigest().encode())
    return data


def openvino_cache_dir() -> str | None:
    """The folder for OpenVINO's compiled-model cache (its ``CACHE_DIR`` property), or None."""
    root = cache_dir()
    if root is None:
        return None
    folder = root / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _warn_once(f"cannot create {folder}: {e.strerror or e}")
        return None
    return str(folder)


def _checks_path() -> Path | None:
    root = cache_dir()
    return None if root is None else root / "precision_checks.json"


def _read_checks(path: Path) -> dict:
    try:
        checks = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return checks if isinstance(checks, dict) else {}


def cached_check(key: str) -> float | None:
    """The PSNR (dB) a precision check stored under ``key``, or None."""
    path = _checks_path()
    value = _read_checks(path).get(key) if path is not None else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def store_check(key: str, db: float) -> None:
    """Remember a precision check's PSNR under ``key`` (``inf`` kept as a large number)."""
    path = _checks_path()
    if path is None:
        return
    checks = _read_checks(path)
    checks[key] = min(float(db), 1e9)
    _write(path, json.dumps(checks, indent=1, sort_keys=True).encode())
