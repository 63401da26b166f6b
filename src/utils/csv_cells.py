"""CSV cells that a spreadsheet will not run: text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is a formula to Excel / LibreOffice / Google Sheets (OWASP "CSV injection"), so such text gets a leading
``'`` (shown as text, not evaluated). Numbers are left as numbers (a negative value stays a number)."""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """``value`` safe to write as a CSV cell: text starting like a formula is prefixed with ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_rows(path, rows, fieldnames=None):
    """Write ``rows`` (dicts) to the CSV file ``path`` (its folder made), every cell through :func:`csv_cell`: the
    one CSV writer of the suite's tables and benchmarks. ``fieldnames``: the columns in order (keys not in it are
    left out); None: every key of the rows in first-seen order. Returns ``path`` as a :class:`~pathlib.Path`."""
    import csv
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(fieldnames) if fieldnames is not None else list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return path
