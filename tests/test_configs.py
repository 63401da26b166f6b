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
                       if experiment.startswith("diff_restorer_stage2") else "seed=10"], tmp_path)
    for node in ("model", "data", "trainer", "callbacks"):
        OmegaConf.to_container(cfg[node], resolve=True, throw_on_missing=True)
