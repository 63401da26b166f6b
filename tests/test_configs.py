"""Every experiment, ablation, sweep and trainer preset composes, and its objects instantiate."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.diffuir.unet import SIZES
from tests.conftest import CONF

# DiffUIR's experiments and ablations; Diff-Restorer's (diff_restorer_*, dr_*) are tested in tests/diff_restorer/
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("diffuir_*.yaml"))
ABLATIONS = sorted(p.stem for p in (CONF / "ablation").glob("*.yaml") if not p.stem.startswith("dr_"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(compose_cfg, experiment, tmp_path):
    cfg = compose_cfg([f"experiment={experiment}"], tmp_path)
    model = instantiate(cfg.model)
    instantiate(cfg.data)
    if cfg.trainer.accelerator != "gpu":  # a GPU experiment's trainer is built on a GPU only (test_trainer_presets)
        instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    size = experiment.split("_")[1].upper()
    assert (model.net.stem.out_channels, model.net.pad_multiple) == (SIZES[size]["dim"], 16)


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_ablation_switches(compose_cfg, ablation, tmp_path):
    cfg = compose_cfg(["experiment=diffuir_t", f"ablation={ablation}"], tmp_path)
    model = instantiate(cfg.model)
    d = model.diffusion
    expected = {"full": (True, True, True), "no_sdt": (True, True, False), "no_ec_sdt": (False, True, False),
                "no_ic_sdt": (True, False, False)}[ablation]
    assert (d.explicit_condition, d.implicit_condition, d.shared_distribution) == expected
    assert model.net.in_channels == d.network_in_channels


def test_sweeps_define_the_paper_tables(compose_cfg, tmp_path):
    t2 = compose_cfg(["sweep=diffuir_table2"], tmp_path, hydra_config=True)
    assert t2.hydra.sweeper.params.ablation.split(",") == ["full", "no_sdt", "no_ec_sdt", "no_ic_sdt"]
    t3 = compose_cfg(["sweep=diffuir_table3"], tmp_path, hydra_config=True)
    assert len(t3.hydra.sweeper.params["model.diffusion.delta_end"].split(",")) == 6
    hp = compose_cfg(["hparams_search=diffuir_lr_batch"], tmp_path, hydra_config=True)
    assert "model.optimizer.lr" in hp.hydra.sweeper.params


@pytest.mark.parametrize("trainer", sorted(p.stem for p in (CONF / "trainer").glob("*.yaml")))
def test_trainer_presets_compose(compose_cfg, trainer, tmp_path):
    cfg = compose_cfg([f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.trainer.Trainer"
    if trainer in ("cpu", "ddp_cpu", "default"):
        instantiate(cfg.trainer, logger=False, enable_checkpointing=False)


def test_mismatched_channels_is_a_clear_error(compose_cfg, tmp_path):
    cfg = compose_cfg(["experiment=diffuir_t", "model.net.in_channels=3"], tmp_path)
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match="model.net.in_channels=3 does not fit"):
        instantiate(cfg.model)


def test_unknown_config_key_is_rejected(compose_cfg, tmp_path):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="model.diffusion.delta_ned"):
        compose_cfg(["model.diffusion.delta_ned=1e-3"], tmp_path)


def test_conf_groups_exist():
    for group in ("model", "data", "trainer", "callbacks", "logger", "paths", "experiment", "debug", "hydra"):
        assert any(Path(CONF, group).glob("*.yaml")), group


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONF / "data").glob("*.yaml")))
@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_resolves_with_every_data_config(compose_cfg, experiment, data, tmp_path):
    """No interpolation of a model config may need a key one data config lacks (model.task_names once read
    data.tasks, which data=diffuir_tasks does not have)."""
    cfg = compose_cfg([f"experiment={experiment}", f"data={data}", "model.stage1_ckpt=null"
                       if experiment.startswith("diff_restorer_stage2") else "seed=10",
                       "data.root=photos" if data == "folder" else "seed=10"], tmp_path)
    for node in ("model", "data", "trainer", "callbacks"):
        OmegaConf.to_container(cfg[node], resolve=True, throw_on_missing=True)


# ------------------------------------------------------------------------------------------ the papers' recipes
PAPER_SIZES = ("t", "s", "b", "l")


@pytest.mark.parametrize("size", PAPER_SIZES)
def test_paper_experiments_train_the_paper_by_default(compose_cfg, size, tmp_path):
    """experiment=diffuir_{t,s,b,l}: the five-task manifests at 256², the official batch 10 × accumulation 2 and
    Adam 8e-5 for that batch of 20; recipe=diffuir_paper: 10 per step; data=builtin one override away."""
    cfg = compose_cfg([f"experiment=diffuir_{size}"], tmp_path)
    assert cfg.data._target_ == "src.data.manifest_datamodule.DiffUIRDataModule"
    assert (cfg.data.patch_size, cfg.data.batch_size, cfg.trainer.accumulate_grad_batches) == (256, 10, 2)
    assert cfg.model.optimizer.lr == 8e-5 and cfg.lr_scaling.reference_batch == 20
    assert cfg.data.task_weights == {"haze": 0.4, "low_light": 0.1, "rain": 0.2, "snow": 0.2, "blur": 0.1}
    assert (cfg.trainer.max_steps, cfg.model.ema.decay, cfg.model.diffusion.sampling_steps) == (300000, 0.995, 3)
    paper = compose_cfg([f"experiment=diffuir_{size}", "recipe=diffuir_paper"], tmp_path)
    assert (paper.data.batch_size, paper.trainer.accumulate_grad_batches, paper.lr_scaling.reference_batch) == (
        10, 1, 10)
    builtin = compose_cfg([f"experiment=diffuir_{size}", "data=builtin"], tmp_path)
    assert builtin.data._target_ == "src.data.datamodule.BuiltinDataModule"


def test_demo_and_photos_experiments_keep_their_recipes(compose_cfg, tmp_path):
    from src.train import effective_batch, scale_learning_rate

    demo = compose_cfg(["experiment=diffuir_t_demo"], tmp_path)
    own = OmegaConf.load(CONF / "experiment" / "diffuir_t_demo.yaml")  # the lead's file: its values, unscaled
    assert demo.data._target_ == "src.data.datamodule.BuiltinDataModule" and demo.lr_scaling is None
    assert (demo.data.batch_size, demo.data.patch_size, demo.trainer.max_steps) == (
        own.data.batch_size, own.data.patch_size, own.trainer.max_steps)
    scale_learning_rate(demo)
    assert demo.model.optimizer.lr == own.model.optimizer.lr == 1.5e-3  # no recipe: the lr as written
    assert effective_batch(demo)["effective"] == 8 and demo.trainer.accelerator == "cpu"  # 8 64² crops per step
    photos = compose_cfg(["experiment=diffuir_t_photos"], tmp_path)
    assert photos.data._target_ == "src.data.folder.FolderDataModule" and photos.trainer.strategy == "ddp"
    assert photos.trainer.devices == 2 and photos.lr_scaling is None
    gpu = compose_cfg(["experiment=diffuir_t_photos_gpu"], tmp_path)  # the shipped weights' GPU stage
    assert gpu.trainer.accelerator == "gpu" and gpu.trainer.devices == 1 and "strategy" not in gpu.trainer
    assert gpu.model.init_from == "src/pretrained/diffuir_t_photos" and gpu.model.net.dim == 32
    assert (gpu.data.batch_size, gpu.data.patch_size, gpu.data.task_weights.haze) == (48, 128, 0.2)


@pytest.mark.parametrize("overrides,effective,lr", [
    ([], 20, 8e-5),
    (["trainer=a100x2"], 40, 1.6e-4),
    (["trainer=a100x2", "trainer.num_nodes=2"], 80, 3.2e-4),
    (["trainer.accumulate_grad_batches=1"], 10, 4e-5),
    (["recipe=diffuir_paper", "trainer=a100x2"], 20, 1.6e-4),
    (["lr_scaling.rule=sqrt", "trainer=a100x2", "trainer.num_nodes=2"], 80, 1.6e-4),
    (["lr_scaling=null", "trainer=a100x2"], 40, 8e-5),
])
def test_learning_rate_follows_the_effective_batch(compose_cfg, overrides, effective, lr, tmp_path):
    from src.train import effective_batch, scale_learning_rate

    cfg = compose_cfg(["experiment=diffuir_l", *overrides], tmp_path)
    line = scale_learning_rate(cfg)
    assert effective_batch(cfg)["effective"] == effective and f"effective batch {effective} =" in line
    assert cfg.model.optimizer.lr == pytest.approx(lr, rel=1e-9)
    assert OmegaConf.to_container(cfg.model, resolve=True)["optimizer"]["lr"] == pytest.approx(lr)


def test_paper_experiment_without_manifests_fails_in_seconds(compose_cfg, tmp_path):
    """No data_manifests/ here: a usage error naming each missing manifest and the command that builds it,
    before any model is trained or any file written."""
    import time

    from src.train import UsageError, train

    cfg = compose_cfg(["experiment=diffuir_l", f"paths.root_dir={tmp_path}"], tmp_path / "run")
    started = time.perf_counter()
    with pytest.raises(UsageError) as err:
        train(cfg)
    assert time.perf_counter() - started < 30
    text = str(err.value)
    assert f"data.train_manifests[0]: {tmp_path / 'data_manifests' / 'rain_merged_train.csv'}" in text
    assert "python -m src.data.manifests build rain_merged --root" in text
    assert "build it: python -m src.data.manifests build gopro --root" in text and "data=builtin" in text
    assert "data.testsets.GoPro" in text and not (tmp_path / "run").exists()


def test_task_subset_on_the_paper_data_filters_test_sets(compose_cfg, tmp_path):
    cfg = compose_cfg(["experiment=diffuir_t", "data.tasks=[noise,low_light]"], tmp_path)
    dm = instantiate(cfg.data)
    assert dm.testset_manifests == {"LOL": "lol_test.csv"}  # the rain, snow, haze and blur sets left out
    weights = dict(zip(__import__("src.tasks", fromlist=["TASKS"]).TASKS, dm._weights()))
    assert weights["low_light"] == 0.1 and weights["noise"] == 0.5 and weights["haze"] == 0
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match=r"data.tasks: unknown task\(s\) \['nois'\]"):
        instantiate(compose_cfg(["experiment=diffuir_t", "data.tasks=[nois]"], tmp_path).data)


@pytest.mark.parametrize("data", ["builtin", "diffuir_tasks", "eight_degradations", "folder"])
def test_every_data_config_has_tasks(compose_cfg, data, tmp_path):
    cfg = compose_cfg([f"data={data}", "data.tasks=[noise,low_light]", "data.root=x"
                       if data == "folder" else "seed=10"], tmp_path)
    assert list(cfg.data.tasks) == ["noise", "low_light"]


# ------------------------------------------------------------------------------------------ test-set registry
def _registry_files():
    return {p.stem: OmegaConf.load(p) for p in sorted((CONF / "data" / "testsets").glob("*.yaml"))}


def test_one_test_set_registry_with_one_spelling_per_set():
    from src.tasks import TASKS

    seen: dict[str, object] = {}
    for group, cfg in _registry_files().items():
        assert set(cfg.val_sets) <= set(cfg.testsets), group
        for name, spec in cfg.testsets.items():
            assert spec.manifest.endswith(".csv") and set(spec.tasks) <= set(TASKS), (group, name)
            if name in seen:  # written identically wherever it appears
                assert OmegaConf.to_container(spec) == OmegaConf.to_container(seen[name]), name
            seen[name] = spec
    lowered = [n.lower() for n in seen]
    assert len(lowered) == len(set(lowered)) == 30  # no set under two spellings (Rain100H / rain100h)
    manifests = [s.manifest for s in seen.values()]
    assert len(manifests) == len(set(manifests))  # and no manifest under two names


def test_eval_composes_the_registry():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["ckpt_path=x", "paths.output_dir=unused"])
    groups = _registry_files()
    assert set(cfg.benchmark_groups) == set(groups)
    for group, registry in groups.items():
        assert OmegaConf.to_container(cfg.benchmark_groups[group].testsets) == OmegaConf.to_container(
            registry.testsets)
    ablation = cfg.benchmark_groups.diff_restorer_ablation.testsets
    assert list(ablation) == ["LOL", "SOTS-outdoor", "RealSnow", "Snow+Noise", "Raindrop+Noise+Blur"]
