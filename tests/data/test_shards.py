"""Pre-decoded training shards (litdata): built by `python -m src.data.manifests shards`, read by the same
DataModules, giving the same training samples as the image files."""

from __future__ import annotations

import pytest
import torch

from src.data.balancing import SampleKey
from src.data.fake_trees import build_fake_data
from src.data.manifest_datamodule import DiffRestorerDataModule, DiffUIRDataModule
from src.data.manifests import main as manifests_cli

pytest.importorskip("litdata", reason="the `shards` extra (pip install -e .[shards])")

TRAIN = ["lol_train.csv", "div2k_train.csv", "rain1400_train.csv"]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    data, manifests = build_fake_data(base, sizes={"lol": (80, 60), "div2k": (96, 72), "rain1400": (70, 50)})
    return base, data, manifests


def _shards(fake, name, resize):
    base, data, manifests = fake
    out = base / name
    args = ["shards", *[str(manifests / m) for m in TRAIN], "--out", str(out), "--data-root", str(data)]
    assert manifests_cli(args + (["--resize", str(resize)] if resize else [])) == 0
    return out


def _dm(cls, fake, **kw):
    _, data, manifests = fake
    return cls(str(data), train_manifests=TRAIN, manifest_dir=str(manifests), batch_size=2, train_samples=8,
               num_workers=0, tasks=["low_light", "noise", "jpeg", "rain"], **kw) if cls is DiffRestorerDataModule \
        else cls(str(data), train_manifests=TRAIN, manifest_dir=str(manifests), batch_size=2, train_samples=8,
                 num_workers=0, task_weights={"low_light": 0.5, "rain": 0.5}, **kw)


def _same_samples(a, b):
    """Identical samples (not oversampled copies: their random crop is taken after the shard's resize)."""
    for i in range(len(a.train_set)):
        x, y = a.train_set[SampleKey(i, 7, False)], b.train_set[SampleKey(i, 7, False)]
        for k in ("lq", "gt"):
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)


def test_resized_shards_give_diff_restorers_samples(fake):
    files, sharded = (_dm(DiffRestorerDataModule, fake, patch_size=32, shards=s)
                      for s in (None, str(_shards(fake, "dr32", 32))))
    files.setup("fit")
    sharded.setup("fit")
    assert sharded.train_set.images is not None and sharded.train_set.images.resize == 32
    _same_samples(files, sharded)
    batch = next(iter(sharded.train_dataloader()))
    assert batch["lq"].shape == (2, 3, 32, 32)


def test_original_size_shards_give_diffuirs_crops_and_a_resized_shard_is_refused(fake):
    full = str(_shards(fake, "full", None))
    files, sharded = (_dm(DiffUIRDataModule, fake, patch_size=32, shards=s) for s in (None, full))
    files.setup("fit")
    sharded.setup("fit")
    _same_samples(files, sharded)
    wrong = _dm(DiffUIRDataModule, fake, patch_size=32, shards=str(_shards(fake, "dr48", 48)))
    with pytest.raises(ValueError, match="resized to 48"):
        wrong.setup("fit")


def test_rows_missing_from_the_shards_are_named(fake):
    base, data, manifests = fake
    out = base / "lol_only"
    assert manifests_cli(["shards", str(manifests / "lol_train.csv"), "--out", str(out), "--data-root", str(data)]) == 0
    dm = _dm(DiffUIRDataModule, fake, patch_size=32, shards=str(out))
    with pytest.raises(ValueError, match="training rows are not in the shards"):
        dm.setup("fit")
    assert manifests_cli(["shards", str(manifests / "lol_train.csv"), "--out", str(out), "--data-root", str(data)]) == 2
