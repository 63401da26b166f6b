"""src.tasks: the task vocabulary at the bottom of the house (labels are indices into TASKS)."""

from __future__ import annotations

import pytest
import torch

from src.tasks import TASKS, check_task, task_name


def test_labels_name_their_task_and_bad_labels_are_refused():
    assert [task_name(i) for i in range(len(TASKS))] == list(TASKS)
    assert task_name(torch.tensor(1)) == "low_light"  # a batch's tensor label
    for bad in (-1, len(TASKS)):
        with pytest.raises(ValueError, match=rf"batch task label {bad} is not an index into src.tasks.TASKS"):
            task_name(bad)


def test_unknown_task_names_list_the_known_ones():
    check_task("haze")
    with pytest.raises(ValueError, match="unknown degradation task 'fog'; expected one of noise, low_light"):
        check_task("fog")
