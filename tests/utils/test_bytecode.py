"""src/utils/bytecode.py: the modules' bytecode is written even where PYTHONDONTWRITEBYTECODE is set."""

import os
import subprocess
import sys
from pathlib import Path

from src.utils.bytecode import warm

ROOT = Path(__file__).resolve().parents[2]


def test_warm_imports_what_is_installed_and_lists_what_is_not():
    assert warm(("json", "no_such_package_here.sub")) == (["json"], ["no_such_package_here.sub"])


def test_bytecode_is_written_although_the_environment_forbids_it(tmp_path):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "src.utils.bytecode", "src.utils.csv_cells"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bytecode compiled for what 1 modules import" in done.stdout
    assert list(tmp_path.rglob("csv_cells*.pyc")), "no .pyc written for src/utils/csv_cells.py"
