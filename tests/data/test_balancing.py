"""Task balancing: exact per-batch compositions (DiffUIR), per-epoch resampling (Diff-Restorer), DDP shards,
per-sample seeds (worker-count independent), and the DataModules end to end on a tiny fake dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data.distributed import DistributedSampler

from src.data.balancing import (
    BalancedTaskSampler,
    SampleKey,
    ShardSampler,
    TaskCompositionSampler,
    composition_counts,
    draw_composition,
    task_pools,
    weights_vector,
)
from src.data.datasets import hist_equalize
from src.data.manifest_datamodule import DiffRestorerDataModule, DiffUIRDataModule
from src.data.manifests import Row, write_manifest
from src.tasks import TASKS

W = weights_vector({"haze": 0.4, "low_light": 0.1, "rain": 0.2, "snow": 0.2, "blur": 0.1})
POOLS = [np.arange(0), np.arange(0, 7), np.arange(7, 300), np.arange(300, 340), np.arange(0),
         np.arange(340, 1340), np.arange(1340, 1345), np.arange(0)]  # sizes: 0, 7, 293, 40, 0, 1000, 5, 0
LABEL = np.zeros(1345, dtype=int)
for t, p in enumerate(POOLS):
    LABEL[p] = t


def batch_counts(batch):
    return Counter(TASKS[LABEL[k.row]] for k in batch)


def test_diffuir_composition_is_exact_in_every_batch():
    assert composition_counts(W, 10).tolist() == [0, 1, 4, 2, 0, 2, 1, 0]
    s = TaskCompositionSampler(POOLS, W, batch_size=10, batches_per_epoch=50, seed=3)
    batches = list(s.batches())
    assert len(batches) == 50 and len(s) == 500 and len(list(iter(s))) == 500
    for b in batches:
        assert batch_counts(b) == {"haze": 4, "low_light": 1, "rain": 2, "snow": 2, "blur": 1}
    # each task drawn without replacement within a pass over its pool: low-light's 7 rows all appear in 7 batches
    ll = [k.row for b in batches[:7] for k in b if LABEL[k.row] == 1]
    assert sorted(ll) == list(range(7))
    assert len({k.seed for b in batches for k in b}) == 500  # a distinct seed per sample


def test_fractional_weights_match_in_expectation():
    s = TaskCompositionSampler(POOLS, W, batch_size=8, batches_per_epoch=2000, seed=0)  # 3.2, .8, 1.6, 1.6, .8
    total = Counter()
    for b in s.batches():
        assert len(b) == 8
        total += batch_counts(b)
    freq = {t: total[t] / (8 * 2000) for t in total}
    for t, w in zip(TASKS, W):
        assert abs(freq.get(t, 0.0) - w) < 0.01, (t, freq.get(t), w)
    rng = np.random.default_rng(0)
    for _ in range(100):
        c = draw_composition(np.array([3.2, 0.8, 1.6, 1.6, 0.8]), rng)
        assert c.sum() == 8 and (c >= [3, 0, 1, 1, 0]).all() and (c <= [4, 1, 2, 2, 1]).all()


def test_ddp_shards_are_disjoint_and_cover_the_global_order():
    single = TaskCompositionSampler(POOLS, W, 10, batches_per_epoch=20, seed=1, world_size=1)
    ranks = [TaskCompositionSampler(POOLS, W, 10, batches_per_epoch=10, seed=1, rank=r, world_size=2) for r in (0, 1)]
    glob = list(single.batches())
    assert [list(b) for b in ranks[0].batches()] == glob[0::2]
    assert [list(b) for b in ranks[1].batches()] == glob[1::2]
    # within one pass of a pool, the two ranks never draw the same row
    haze0 = {k.row for b in ranks[0].batches() for k in b if LABEL[k.row] == 2}
    haze1 = {k.row for b in ranks[1].batches() for k in b if LABEL[k.row] == 2}
    assert not haze0 & haze1
    for s in ranks:
        assert isinstance(s, DistributedSampler)  # Lightning keeps it (no second distributed wrapper)
    ev = [list(ShardSampler(5, r, 2)) for r in (0, 1)]
    assert ev == [[0, 2, 4], [1, 3]]
    with pytest.raises(ValueError, match="rank 2"):
        ShardSampler(5, 2, 2)


def test_epochs_reshuffle_and_are_reproducible():
    s = TaskCompositionSampler(POOLS, W, 10, batches_per_epoch=5, seed=7)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(0)
    assert list(s) == e0 and e0 != e1


def test_diff_restorer_epoch_has_n_per_task_subsampled_or_oversampled():
    n = 100
    s = BalancedTaskSampler(POOLS, samples_per_task=n, seed=0)
    keys = list(s)
    nonempty = [t for t, p in enumerate(POOLS) if len(p)]
    assert len(keys) == len(s) == n * len(nonempty)
    per_task = Counter(LABEL[k.row] for k in keys)
    assert per_task == {t: n for t in nonempty}
    rows_of = {t: [k for k in keys if LABEL[k.row] == t] for t in nonempty}
    big = rows_of[5]  # 1000 rows -> 100 distinct, none augmented
    assert len({k.row for k in big}) == n and not any(k.augment for k in big)
    small = rows_of[6]  # 5 rows -> 20 copies each, 5 plain + 95 augmented
    assert Counter(k.row for k in small) == {r: 20 for r in POOLS[6]}
    assert sum(not k.augment for k in small) == 5
    assert {k.row for k in small if not k.augment} == set(POOLS[6])
    s.set_epoch(1)
    assert {k.row for k in s if LABEL[k.row] == 5} != {k.row for k in big}  # a fresh subset each epoch
    # DDP: shards padded to equal length, disjoint positions, together the whole epoch
    shards = [list(BalancedTaskSampler(POOLS, n, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert len({len(x) for x in shards}) == 1
    glob = list(BalancedTaskSampler(POOLS, n, seed=0))
    assert Counter(k for x in shards for k in x) - Counter(glob) == Counter(glob[: 3 * len(shards[0]) - len(glob)])


# ----------------------------------------------------------------------------------------- DataModules end to end
def _png(path: Path, rng, size=(20, 16), value=None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) if value is None else np.full(
        (size[1], size[0], 3), value, np.uint8)
    Image.fromarray(arr).save(path)
    return path.name


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """Tiny dataset: 2 pairs for each of haze/low_light/rain/snow/blur, 2 clean images (noise/jpeg synthesised),
    raindrop pairs, and a test set with a no-reference row."""
    root = tmp_path_factory.mktemp("fake")
    rng = np.random.default_rng(0)
    rows, test = [], []
    for task in ("haze", "low_light", "rain", "snow", "blur", "raindrop"):
        for i in range(2):
            _png(root / task / "lq" / f"{i}.png", rng)
            _png(root / task / "gt" / f"{i}.png", rng)
            rows.append(Row(f"{task}/lq/{i}.png", f"{task}/gt/{i}.png", task, task.upper()))
    for i in range(2):
        _png(root / "clean" / f"{i}.png", rng)
        rows += [Row(None, f"clean/{i}.png", t, "DIV2K") for t in ("noise", "jpeg")]
    _png(root / "test" / "dark.png", rng, value=None)
    _png(root / "test" / "ref.png", rng)
    _png(root / "test" / "real.png", rng, size=(24, 12))
    test = [Row("test/dark.png", "test/ref.png", "low_light", "LOL"), Row("test/real.png", None, "haze", "RTTS")]
    write_manifest(rows, root / "m" / "train.csv")
    write_manifest(test, root / "m" / "test.csv")
    return root


class _Trainer:  # what the DataModules read from a Lightning Trainer
    def __init__(self, rank, world):
        self.global_rank, self.world_size = rank, world


def _diffuir(fake, **kw):
    args = dict(data_root=str(fake), manifest_dir=str(fake / "m"), train_manifests=["train.csv"],
                testsets={"t": "test.csv"}, patch_size=8, batch_size=10, train_samples=60, num_workers=0, seed=5)
    return DiffUIRDataModule(**(args | kw))


def test_diffuir_datamodule_batches_carry_the_composition(fake):
    dm = _diffuir(fake)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, DistributedSampler)
    batches = list(loader)
    assert len(batches) == 6
    for b in batches:
        assert b["lq"].shape == b["gt"].shape == (10, 3, 8, 8) and b["task"].dtype == torch.long
        assert 0 <= b["lq"].min() and b["lq"].max() <= 1
        assert Counter(TASKS[i] for i in b["task"].tolist()) == {"haze": 4, "low_light": 1, "rain": 2, "snow": 2,
                                                                 "blur": 1}
    dm.trainer = _Trainer(1, 2)  # DDP: train_samples is split between the ranks
    r1 = dm.train_dataloader().sampler
    assert (r1.rank, r1.num_replicas, len(r1)) == (1, 2, 30)


def test_worker_count_does_not_change_the_data(fake):
    dm = _diffuir(fake, train_samples=20)
    dm.setup("fit")
    ref = list(dm.train_dataloader())
    dm2 = _diffuir(fake, train_samples=20, num_workers=2)
    dm2.setup("fit")
    got = list(dm2.train_dataloader())
    for a, b in zip(ref, got):
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"]) and torch.equal(a["task"], b["task"])


def test_diffuir_eval_no_reference_and_histogram_equalisation(fake):
    dm = _diffuir(fake)
    dm.setup("test")
    batches = list(dm.test_dataloader())
    assert [b["name"][0] for b in batches] == ["test/dark", "test/real"]
    lol, real = batches
    assert lol["has_gt"].tolist() == [True] and real["has_gt"].tolist() == [False]
    assert torch.equal(real["gt"], real["lq"]) and real["source"] == ["RTTS"] and real["lq"].shape[-2:] == (12, 24)
    raw = np.asarray(Image.open(fake / "test" / "dark.png"))
    expect = torch.from_numpy(hist_equalize(raw).astype(np.float32) / 255).permute(2, 0, 1)
    assert torch.allclose(lol["lq"][0], expect)
    assert _diffuir(fake, eval_batch_size=4).test_dataloader().batch_size == 1  # full resolution: one at a time
    cropped = _diffuir(fake, eval_batch_size=2, eval_size=8)
    b = next(iter(cropped.test_dataloader()))
    assert b["lq"].shape == (2, 3, 8, 8) and b["has_gt"].tolist() == [True, False]


def test_diff_restorer_datamodule_balances_eight_tasks(fake):
    dm = DiffRestorerDataModule(data_root=str(fake), manifest_dir=str(fake / "m"), train_manifests=["train.csv"],
                                samples_per_task=6, patch_size=16, batch_size=8, num_workers=0, seed=1)
    dm.setup("fit")
    loader = dm.train_dataloader()
    labels, n = [], 0
    for b in loader:
        assert b["lq"].shape == b["gt"].shape == (8, 3, 16, 16)
        assert 0 <= b["lq"].min() and b["lq"].max() <= 1
        labels += b["task"].tolist()
        n += 1
    assert n == 6 and Counter(labels) == {t: 6 for t in range(8)}  # 48 samples, 6 per task
    keys = list(loader.sampler)
    assert sum(k.augment for k in keys) == 8 * 4  # 2 rows per task, 4 oversampled copies each
    aug = next(k for k in keys if k.augment and LABEL_OF(dm, k) == "haze")
    plain = SampleKey(aug.row, aug.seed, False)
    assert not torch.equal(dm.train_set[aug]["gt"], dm.train_set[plain]["gt"])
    dm.hparams.train_samples = 16  # the suite's common knob: samples per epoch over all tasks -> N = 2
    assert len(dm.train_dataloader().sampler) == 16
    write_manifest([Row("haze/lq/0.png", "haze/gt/0.png", "haze", "H")], fake / "m" / "haze_only.csv")
    bad = DiffRestorerDataModule(data_root=str(fake), manifest_dir=str(fake / "m"), train_manifests=["haze_only.csv"],
                                 tasks=["noise", "haze"])
    with pytest.raises(ValueError, match=r"tasks \['noise'\] have no training rows"):
        bad.setup("fit")


def LABEL_OF(dm, key):  # noqa: N802
    return TASKS[dm.train_set.labels[key.row]]


def test_lightning_keeps_the_samplers_and_sets_the_epoch(fake):
    seen = []

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, i):
            seen.append((self.current_epoch, batch["task"].tolist()))
            return (self.w * batch["lq"].mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = _diffuir(fake, train_samples=20)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(Probe(), datamodule=dm)
    assert len(seen) == 4 and {e for e, _ in seen} == {0, 1}
    assert all(Counter(t)[TASKS.index("haze")] == 4 for _, t in seen)
    assert trainer.train_dataloader.sampler.epoch == 1


def test_histogram_equalisation_definition():
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0] = np.arange(16).reshape(4, 4)  # 16 distinct values -> spread over 0..255
    img[..., 1] = 7  # constant: unchanged
    img[..., 2] = np.array([10, 10, 20, 30] * 4).reshape(4, 4)
    out = hist_equalize(img)
    assert out[..., 0].ravel().tolist() == [round(i * 255 / 15) for i in range(16)]
    assert (out[..., 1] == 7).all()
    assert sorted(set(out[..., 2].ravel().tolist())) == [0, 128, 255]  # cdf 8, 12, 16: 4 · 255 / 8 = 127.5


def test_task_pools_and_weights():
    assert [p.tolist() for p in task_pools([2, 0, 2])][:3] == [[1], [], [0, 2]]
    with pytest.raises(ValueError, match="unknown task"):
        weights_vector({"fog": 1.0})
    with pytest.raises(ValueError, match="weight 0.4 but no rows"):
        TaskCompositionSampler([[], [1]], [0.4, 0.6], 10, 1)


@pytest.mark.parametrize("overrides", [["data=diffuir_tasks"],
                                       ["data=diffuir_tasks", "data/testsets=diffuir_zero_shot"],
                                       ["data=eight_degradations"],
                                       ["data=eight_degradations", "data/testsets=diff_restorer_real"],
                                       ["data=eight_degradations", "data/testsets=diff_restorer_mixed"],
                                       ["experiment=diff_restorer_stage1", "data=eight_degradations"],
                                       ["experiment=diffuir_t", "data=diffuir_tasks", "debug=default"]])
def test_data_configs_compose_and_instantiate(compose_cfg, tmp_path, overrides):
    from hydra.utils import instantiate

    cfg = compose_cfg([*overrides, f"paths.data_dir={tmp_path}"], tmp_path)
    dm = instantiate(cfg.data)
    assert dm.hparams.data_root == str(tmp_path) and set(dm.hparams.val_sets) <= set(dm.hparams.testsets)
    if "data=diffuir_tasks" in overrides:
        assert dm.hparams.task_weights == {"haze": 0.4, "low_light": 0.1, "rain": 0.2, "snow": 0.2, "blur": 0.1}
    elif len(overrides) <= 2 and not overrides[0].startswith("experiment="):  # experiments may override these
        assert (dm.hparams.samples_per_task, dm.hparams.patch_size) == (10000, 512)
    for name in dm.testset_manifests.values():
        assert name.endswith(".csv")
    with pytest.raises(FileNotFoundError, match="python -m src.data.manifests build"):
        dm.setup("fit")  # no manifests built in this checkout: a clear error at start-up


class _RowProbe(L.LightningModule):
    """Records which manifest rows (via their lq file) each rank trains on."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, i):
        with open(f"{self.out}/rank{self.global_rank}.txt", "a") as f:
            f.write(" ".join(str(round(float(x), 6)) for x in batch["gt"].mean((1, 2, 3))) + "\n")
        return (self.w * batch["lq"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_ddp_two_processes_see_their_own_shards(fake, tmp_path):
    dm = _diffuir(fake, train_samples=60)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(_RowProbe(str(tmp_path)), datamodule=dm)
    shards = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 30  # 3 batches of 10 per rank
    ref = _diffuir(fake, train_samples=60)
    ref.setup("fit")
    for r in (0, 1):  # exactly the samples the rank-r shard of the global order prescribes, in order
        expected = [str(round(float(ref.train_set[k]["gt"].mean()), 6)) for k in ref.train_sampler(r, 2)]
        assert shards[r] == expected
    assert shards[0] != shards[1]
