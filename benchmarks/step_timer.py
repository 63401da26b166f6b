"""A Lightning callback that stamps the end of every training step (``benchmarks.train_speed``).

Self-contained on purpose (Lightning and the standard library only): ``train_speed --before COMMIT`` puts a copy of
this file on the path of an older checkout of the suite, whose own ``src`` must not be mixed with today's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L


class StepTimer(L.Callback):
    """Writes the perf_counter time at the end of each training batch (global rank 0) to ``path`` as JSON."""

    def __init__(self, path: str):
        self.path, self.stamps = path, []

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if trainer.is_global_zero:
            self.stamps.append(time.perf_counter())

    def on_train_end(self, trainer, *args, **kwargs) -> None:
        if trainer.is_global_zero:
            Path(self.path).write_text(json.dumps(self.stamps))
