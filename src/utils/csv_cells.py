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
