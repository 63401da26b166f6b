"""Choosing the plotting backend: matplotlib (headless) when installed, else the caller's PIL drawing."""

from __future__ import annotations


def pyplot_or_none(backend: str = "auto"):
    """matplotlib.pyplot on the Agg backend for ``backend`` 'auto'/'matplotlib'; None for 'pil', or for 'auto'
    when matplotlib is not installed (the caller then draws with PIL). 'matplotlib' without it raises."""
    if backend not in ("auto", "matplotlib"):
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if backend == "matplotlib":
            raise
        return None
    return plt
