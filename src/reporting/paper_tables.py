"""The papers' reported numbers as data: DiffUIR Tables 1–5 and Diff-Restorer Tables I–V.

The tables live in ``experiments/paper_tables/*.csv``, one file per table, in long format (one number per row):

=============  =======================================================================================
column         meaning
=============  =======================================================================================
paper          ``DiffUIR`` or ``Diff-Restorer``
table          the table's number as printed (``1`` … ``5``; ``I`` … ``V``)
group          ``task-specific`` / ``universal`` where the table is split so, else empty
method         the row label as printed, citation brackets dropped (``RDDM†``, ``DiffUIR-T(ours)``, ``Ours``)
dataset        the column group as printed (``Deraining (5sets)``, ``TOLED``, ``Real-world: Snow``)
metric         the column as printed (``PSNR``, ``IL-NIQE``, ``FLOPS (G)``)
value          the number exactly as printed (a "-" cell has no row)
task           the suite's degradation key the column is about (``rain``, ``low_light`` …), empty if none
metric_key     the suite's metric name (:mod:`src.metrics.registry`) the number compares with
note           anything else printed in the row (Table 2's condition/shared levels)
=============  =======================================================================================

``paper`` … ``value`` are transcription; ``task`` and ``metric_key`` are this suite's reading of the table (e.g.
DiffUIR Table 4's PSNR/SSIM are computed on all channels, so their key is ``psnr_rgb`` / ``ssim_rgb``; Table 1's
are on Y, key ``psnr`` / ``ssim``).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

PAPER_TABLES_DIR = Path(__file__).resolve().parents[2] / "experiments" / "paper_tables"
FIELDS = ("paper", "table", "group", "method", "dataset", "metric", "value", "task", "metric_key", "note")


@dataclass(frozen=True)
class PaperValue:
    """One number of one paper table."""

    paper: str
    table: str
    group: str
    method: str
    dataset: str
    metric: str
    value: str
    task: str
    metric_key: str
    note: str

    @property
    def number(self) -> float:
        return float(self.value)

    @property
    def source(self) -> str:
        """Short citation, e.g. ``DiffUIR T1 'Deraining (5sets)' DiffUIR-L(ours)``."""
        return f"{self.paper} T{self.table} '{self.dataset}' {self.method}"


@functools.cache
def load_paper_tables(directory: str | Path | None = None) -> tuple[PaperValue, ...]:
    """Every number of every ``*.csv`` in ``directory`` (default: ``experiments/paper_tables``)."""
    directory = Path(directory) if directory else PAPER_TABLES_DIR
    files = sorted(directory.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no paper tables (*.csv) under {directory}")
    values = []
    for path in files:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != FIELDS:
                raise ValueError(f"{path}: expected columns {','.join(FIELDS)}, got {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                try:
                    float(row["value"])
                except ValueError as e:
                    raise ValueError(f"{path}:{line}: value {row['value']!r} is not a number") from e
                values.append(PaperValue(**row))
    return tuple(values)


def paper_values(paper: str | None = None, table: str | None = None, method: str | None = None,
                 task: str | None = None, metric_key: str | None = None, dataset: str | None = None,
                 directory: str | Path | None = None) -> list[PaperValue]:
    """The numbers matching every given field (``None`` matches anything)."""
    wanted = {"paper": paper, "table": table, "method": method, "task": task, "metric_key": metric_key,
              "dataset": dataset}
    return [v for v in load_paper_tables(directory)
            if all(want is None or getattr(v, key) == want for key, want in wanted.items())]


def paper_value(method: str, task: str, metric_key: str, paper: str | None = None, table: str | None = None,
                directory: str | Path | None = None) -> PaperValue | None:
    """The paper's number for ``method`` on a suite ``task`` and ``metric_key``, or ``None`` if not reported.

    When several tables hold one (DiffUIR-L's deblurring PSNR is in Tables 1 and 2), the first table in file
    order wins, so pass ``table`` to pick one.
    """
    found = paper_values(paper=paper, table=table, method=method, task=task, metric_key=metric_key,
                         directory=directory)
    return found[0] if found else None


# DiffUIR's released sizes (§4.2; src.diffuir.unet.SIZES), as Table 1 names them
DIFFUIR_TABLE1_METHOD = {"T": "DiffUIR-T(ours)", "S": "DiffUIR-S(ours)", "B": "DiffUIR-B(ours)", "L": "DiffUIR-L(ours)"}


def diffuir_method_for(size: str | None) -> str | None:
    """Table 1's row for a DiffUIR size ``"T"`` / ``"S"`` / ``"B"`` / ``"L"`` (None: not a paper size)."""
    return DIFFUIR_TABLE1_METHOD.get(size) if size is not None else None
