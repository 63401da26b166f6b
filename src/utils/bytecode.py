"""Compile, once, the bytecode of the modules the suite's commands import: ``python -m src.utils.bytecode``.

Python keeps compiled modules as ``.pyc`` files, unless ``PYTHONDONTWRITEBYTECODE`` is set, as it is on some
sandboxes and CI images. The Makefile also installs with ``pip --no-compile``, which keeps ``make demo`` short. Without
any ``.pyc``, every process compiles torch, Lightning, torchmetrics and the rest from source again: importing what
``python -m src.restore`` needs took 10.9 s instead of 4.9 s on a 2-core Xeon.

This module imports those modules in a child process that is allowed to write ``.pyc`` files, so they land once in
the virtual environment and in ``src/``. Python reads existing ``.pyc`` files whatever ``PYTHONDONTWRITEBYTECODE``
says. ``make setup`` and ``make demo`` run it after installing. A module that needs a package that is not installed
is listed and skipped: the extras decide which are installed, and such a module is compiled when first imported.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

# what the entry points import at start, and what they import later while running: the ONNX export, the engines'
# runtimes, DDP and the classical baselines
MODULES = (
    "src.train", "src.restore", "src.eval", "src.export", "src.app", "src.diffuir.module", "src.diffuir.engines",
    "src.baselines.registry", "benchmarks.unseen_photos",
    "lightning.pytorch.strategies.ddp", "torch.distributed", "torch.onnx", "onnx", "onnxruntime", "openvino", "bm3d",
    "cv2", "scipy.ndimage", "gradio",
)


def warm(modules: tuple[str, ...] = MODULES) -> tuple[list[str], list[str]]:
    """Import each of ``modules``; returns (imported, not importable here: the module, or a package it imports, is
    not installed — the extras installed decide — each with the missing package's name)."""
    imported, missing = [], []
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            missing.append(name if e.name and name.startswith(e.name) else f"{name} (needs {e.name})")
            continue
        imported.append(name)
    return imported, missing


def main(argv: list[str] | None = None) -> int:
    """``python -m src.utils.bytecode [MODULE ...]`` (default :data:`MODULES`)."""
    modules = tuple(sys.argv[1:] if argv is None else argv) or MODULES
    if sys.dont_write_bytecode:  # PYTHONDONTWRITEBYTECODE (or -B): the same in a child allowed to write .pyc files
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        return subprocess.run([sys.executable, "-m", "src.utils.bytecode", *modules], env=env).returncode
    start = time.perf_counter()
    imported, missing = warm(modules)
    print(f"bytecode compiled for what {len(imported)} modules import, in {time.perf_counter() - start:.1f} s"
          + (f"; skipped, not installed: {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
