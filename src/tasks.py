"""The restoration tasks of the suite: the bottom floor every other package may import (it imports nothing).

A task is one synthetic or real degradation (the models of :mod:`src.data.degradations`, the data sets of the
papers' Tables). Its index in :data:`TASKS` is the ``task`` label every DataModule puts in a batch, whichever tasks
a run trains and in whatever order, so a label's name never depends on a model's or a data set's task list.
Also the closed form of DiffUIR's shared coefficient δ̄_T (Table 3), which the sweep tables and the schedule share.
"""

from __future__ import annotations

TASKS = ("noise", "low_light", "haze", "rain", "raindrop", "snow", "blur", "jpeg")


def check_task(task: str) -> None:
    """Raise ``ValueError`` naming ``task`` and listing :data:`TASKS` if it is unknown."""
    if task not in TASKS:
        raise ValueError(f"unknown degradation task {task!r}; expected one of {', '.join(TASKS)}")


def task_name(label) -> str:
    """The task of a batch's ``task`` label (its index in :data:`TASKS`); a clear error for anything else."""
    index = int(label)
    if not 0 <= index < len(TASKS):
        raise ValueError(f"batch task label {index} is not an index into src.tasks.TASKS "
                         f"({len(TASKS)} tasks: {list(TASKS)})")
    return TASKS[index]


# ------------------------------------------------------------------------------ DiffUIR Table 3 (ablation sweeps)
def shared_coefficient(delta_end: float, timesteps: int = 1000, delta_start: float = 1e-6) -> float:
    """δ̄_T reached by a given ``delta_end`` (DiffUIR Table 3's "uni ratio")."""
    return min(1.0, timesteps * (delta_start + delta_end) / 2)
