"""``data=folder``: train or fine-tune on any folder of clean photos, degraded on the fly by the suite's tasks.

The folder is searched recursively for every image type the suite's one reader accepts
(:data:`src.utils.images.IMAGE_EXTENSIONS`); each photo is read by :func:`src.utils.images.read_image`, so a file
that ``src.restore`` accepts trains too. The split is **by file** and stable: a photo is held out when a hash of
its path relative to the root falls below ``heldout_fraction`` (adding photos never moves an old one between
splits), or when its relative path is listed in ``heldout_files``. Photos larger than ``max_side`` are
downscaled (area averaging) when read: it removes most of the sensor noise and JPEG blocking that a "clean" photo
carries, which a denoiser would otherwise learn to keep.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from src.data.builtin import PhotoEvalDataset, PhotoTrainDataset
from src.tasks import TASKS
from src.utils.images import IMAGE_EXTENSIONS, read_image


def list_photos(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (recursive, sorted); a clear error when there is none."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.root={root}: no such folder (a folder of clean photos, searched recursively)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise FileNotFoundError(f"data.root={root}: no image files found (searched recursively for "
                                f"{', '.join(IMAGE_EXTENSIONS)})")
    return files


def is_heldout(rel_path: str, fraction: float) -> bool:
    """Stable by-file split: the first 8 bytes of SHA-1 of the relative path, as a fraction of 2⁶⁴."""
    h = int.from_bytes(hashlib.sha1(rel_path.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < fraction


def split_photos(root: str | Path, heldout_fraction: float = 0.1, heldout_files=()) -> tuple[list[Path], list[Path]]:
    """(train, held-out) files of ``root``; at least one photo on each side when there are two or more."""
    root = Path(root).expanduser()
    files = list_photos(root)
    rel = [p.relative_to(root).as_posix() for p in files]
    listed = set(heldout_files or ())
    unknown = listed - set(rel)
    if unknown:
        raise FileNotFoundError(f"data.heldout_files: {sorted(unknown)[:3]} not found under {root}")
    held = [p for p, r in zip(files, rel) if r in listed or is_heldout(r, heldout_fraction)]
    train = [p for p in files if p not in held]
    if len(files) >= 2 and heldout_fraction > 0 and not held:
        held, train = train[-1:], train[:-1]  # a tiny folder: hold out the last file rather than none
    if not train:
        raise ValueError(f"data.root={root}: all {len(files)} photos are held out; lower data.heldout_fraction")
    return train, held


def load_photo(path: str | Path, max_side: int | None = None, min_side: int = 0) -> np.ndarray:
    """A photo as float32 H×W×3 in [0, 1] through the suite's reader, downscaled (area) to ``max_side``."""
    rgb = read_image(path).rgb
    h, w = rgb.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    if min(rgb.shape[:2]) < min_side:
        raise ValueError(f"{path}: {rgb.shape[1]}×{rgb.shape[0]} after downscaling to max_side={max_side} is "
                         f"smaller than the crop size {min_side}; raise data.max_side or lower data.patch_size")
    return np.ascontiguousarray(rgb, dtype=np.float32)


class FolderDataModule(L.LightningDataModule):
    """Clean photos from ``root`` (recursive), degraded on the fly; batches as :class:`BuiltinDataModule`'s."""

    def __init__(self, root: str, batch_size: int = 8, patch_size: int = 64, train_samples: int = 1000,
                 eval_size: int = 256, tasks=TASKS, task_weights: dict | None = None, heldout_fraction: float = 0.1,
                 heldout_files=(), max_side: int | None = 1024, num_workers: int = 0, eval_batch_size: int = 4,
                 seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.tasks = list(tasks)
        self.task_names = list(TASKS)
        self._cache: dict[str, np.ndarray] = {}

    def _load(self, path: Path) -> np.ndarray:
        key = str(path)
        if key not in self._cache:
            self._cache[key] = load_photo(path, self.hparams.max_side, self.hparams.patch_size)
        return self._cache[key]

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        train, held = split_photos(hp.root, hp.heldout_fraction, hp.heldout_files)
        self.train_files, self.heldout_files = train, held
        if stage in (None, "fit"):
            self.train_set = PhotoTrainDataset([self._load(p) for p in train], hp.tasks, hp.task_weights,
                                               hp.patch_size, hp.train_samples)
        root = Path(hp.root).expanduser()
        names = {p.relative_to(root).as_posix(): p for p in held}
        self.eval_set = PhotoEvalDataset(list(names), lambda n: self._load(names[n]), hp.tasks, hp.eval_size, hp.seed)

    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          persistent_workers=workers > 0, drop_last=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_set, self.hparams.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
