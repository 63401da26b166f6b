"""LightningDataModules of the suite."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from src.data.builtin import HELDOUT_IMAGES, TRAIN_IMAGES, BuiltinEvalDataset, BuiltinTrainDataset
from src.tasks import TASKS


class BuiltinDataModule(L.LightningDataModule):
    """Built-in images (scikit-image samples) with on-the-fly synthetic degradations of all eight tasks.

    Batches are dicts: ``lq`` and ``gt`` (B×3×H×W in [0, 1]), ``task`` (index into ``TASKS``, whatever subset
    and order ``tasks`` holds), and for evaluation ``name``. ``task_names`` is the label vocabulary (``TASKS``),
    ``tasks`` the tasks trained and evaluated.
    """

    def __init__(self, batch_size: int = 8, patch_size: int = 64, train_samples: int = 1000,
                 eval_size: int = 128, tasks=TASKS, task_weights: dict | None = None,
                 train_images=TRAIN_IMAGES, heldout_images=HELDOUT_IMAGES, num_workers: int = 0,
                 eval_batch_size: int = 4, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.tasks = list(tasks)
        self.task_names = list(TASKS)  # labels index this list, as in every DataModule of the suite

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit"):
            self.train_set = BuiltinTrainDataset(hp.train_images, hp.tasks, hp.task_weights, hp.patch_size,
                                                 hp.train_samples)
        self.eval_set = BuiltinEvalDataset(hp.heldout_images, hp.tasks, hp.eval_size, hp.seed)

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
