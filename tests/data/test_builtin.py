import numpy as np
import pytest
import torch

from src.data.builtin import (
    HELDOUT_IMAGES,
    TRAIN_IMAGES,
    BuiltinEvalDataset,
    BuiltinTrainDataset,
    load_builtin_image,
)
from src.data.datamodule import BuiltinDataModule
from src.tasks import TASKS


def test_builtin_images_load_as_rgb_float_and_split_is_disjoint():
    assert not set(TRAIN_IMAGES) & set(HELDOUT_IMAGES)
    for name in (*TRAIN_IMAGES, *HELDOUT_IMAGES):
        img = load_builtin_image(name)
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert 0 <= img.min() and img.max() <= 1 and min(img.shape[:2]) >= 128
    with pytest.raises(ValueError, match="no sample image"):
        load_builtin_image("not_an_image")


def test_train_samples_cover_tasks_by_weight():
    torch.manual_seed(0)
    ds = BuiltinTrainDataset(images=("astronaut", "coffee"), tasks=("noise", "haze"),
                             task_weights={"noise": 0.8, "haze": 0.2}, patch_size=32, length=200)
    labels = []
    for i in range(200):
        s = ds[i]
        assert s["lq"].shape == s["gt"].shape == (3, 32, 32)
        assert 0 <= s["lq"].min() and s["lq"].max() <= 1
        labels.append(s["task"])
    frac_noise = np.mean(np.array(labels) == TASKS.index("noise"))
    assert 0.7 < frac_noise < 0.9
    with pytest.raises(ValueError, match="unknown task 'fog'"):
        BuiltinTrainDataset(tasks=("fog",))


def test_eval_set_is_every_image_task_pair_and_deterministic():
    ds = BuiltinEvalDataset(size=64, seed=3)
    assert len(ds) == len(HELDOUT_IMAGES) * len(TASKS)
    a, b = ds[5], BuiltinEvalDataset(size=64, seed=3)[5]
    assert torch.equal(a["lq"], b["lq"]) and a["name"] == b["name"]
    assert not torch.equal(a["lq"], BuiltinEvalDataset(size=64, seed=4)[5]["lq"])
    assert {ds[i]["task"] for i in range(len(TASKS))} == set(range(len(TASKS)))


def test_datamodule_batches():
    dm = BuiltinDataModule(batch_size=4, patch_size=32, train_samples=8, eval_size=48, eval_batch_size=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["lq"].shape == (4, 3, 32, 32) and batch["task"].shape == (4,)
    val = next(iter(dm.val_dataloader()))
    assert val["gt"].shape == (3, 3, 48, 48) and len(val["name"]) == 3
