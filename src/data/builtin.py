"""Built-in data: clean images bundled with scikit-image, degraded on the fly for every task of the suite.

Lets every experiment run with no download. The split is by image, fixed: the held-out images never appear
in training. Colour and grayscale photographs both serve (grayscale is replicated to RGB).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from src.data.datasets import center_crop
from src.data.degradations import degrade
from src.tasks import TASKS

TRAIN_IMAGES = (
    "astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "brick", "grass", "gravel", "moon", "coins", "clock",
)
HELDOUT_IMAGES = ("chelsea", "stereo_motorcycle", "camera")


@functools.cache
def load_builtin_image(name: str) -> np.ndarray:
    """A scikit-image sample image as float32 H×W×3 in [0, 1] (grayscale replicated, alpha dropped)."""
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise ValueError(f"scikit-image has no sample image {name!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = loader()
    img = img[0] if isinstance(img, tuple) else img  # stereo pairs: the left view
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    scale = 255.0 if img.dtype == np.uint8 else 1.0
    img = img.astype(np.float32) / scale
    img.setflags(write=False)
    return img


def task_index(task: str) -> int:
    """The label of a task: its position in :data:`src.tasks.TASKS`."""
    return TASKS.index(task)


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image of {h}×{w} is smaller than the crop size {size}")
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return img[y:y + size, x:x + size]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _sample(gt: np.ndarray, task: str, rng: np.random.Generator) -> dict:
    lq = degrade(gt, task, rng)
    return {"lq": to_tensor(lq), "gt": to_tensor(gt), "task": task_index(task)}


class PhotoTrainDataset(Dataset):
    """Random crops of clean photos (H×W×3 float arrays) with random flips, each degraded by a task drawn by weight.

    Randomness comes from torch's generator, which Lightning seeds per worker (``seed_everything(workers=True)``),
    so a run is reproducible for a given seed and worker count.
    """

    def __init__(self, photos, tasks=TASKS, task_weights=None, patch_size: int = 64, length: int = 1000):
        for t in tasks:
            if t not in TASKS:
                raise ValueError(f"unknown task {t!r} in data.tasks: expected some of {list(TASKS)}")
        self.images = list(photos)
        if not self.images:
            raise ValueError("no training photos")
        self.tasks = list(tasks)
        weights = np.ones(len(tasks)) if task_weights is None else np.asarray(
            [task_weights[t] for t in tasks], dtype=np.float64)
        self.task_probs = weights / weights.sum()
        self.patch_size, self.length = patch_size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        img = self.images[rng.integers(len(self.images))]
        gt = random_crop(img, self.patch_size, rng)
        if rng.random() < 0.5:
            gt = gt[:, ::-1]
        if rng.random() < 0.5:
            gt = gt[::-1]
        task = self.tasks[rng.choice(len(self.tasks), p=self.task_probs)]
        return _sample(np.ascontiguousarray(gt), task, rng)


class PhotoEvalDataset(Dataset):
    """Every (held-out photo, task) pair once: a centre crop, degraded with a seed fixed per pair.

    ``load``: name -> H×W×3 float array in [0, 1], called when a sample is read.
    """

    def __init__(self, names, load, tasks=TASKS, size: int = 128, seed: int = 0):
        self.pairs = [(n, t) for n in names for t in tasks]
        self.load, self.size, self.seed = load, size, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        name, task = self.pairs[index]
        gt = center_crop(self.load(name), self.size)
        rng = np.random.default_rng([self.seed, index])
        return {**_sample(gt, task, rng), "name": f"{name}_{task}"}


class BuiltinTrainDataset(PhotoTrainDataset):
    """:class:`PhotoTrainDataset` over scikit-image's sample photos, by name."""

    def __init__(self, images=TRAIN_IMAGES, tasks=TASKS, task_weights=None, patch_size: int = 64,
                 length: int = 1000):
        super().__init__([load_builtin_image(n) for n in images], tasks, task_weights, patch_size, length)


class BuiltinEvalDataset(PhotoEvalDataset):
    """Every (held-out scikit-image photo, task) pair once (:class:`PhotoEvalDataset`)."""

    def __init__(self, images=HELDOUT_IMAGES, tasks=TASKS, size: int = 128, seed: int = 0):
        super().__init__(images, load_builtin_image, tasks, size, seed)
