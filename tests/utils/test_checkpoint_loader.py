"""src.utils.checkpoints as the one loader in fact: the stored config is written by one mixin under one key, checked
once per load, and every ``from_checkpoint`` is the same loader refusing a file of another class."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import src.utils.checkpoints as checkpoints
from src.diff_restorer.stage1 import DiffRestorerStage1
from src.diffuir.module import DiffUIRModule
from src.utils.checkpoints import MODEL_CONFIG_KEY, CheckpointError, load_restoration_model
from tests.conftest import compose_train


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny DiffUIR checkpoint written through the module's own on_save_checkpoint (the mixin)."""
    config = OmegaConf.to_container(compose_train(["experiment=diffuir_t", "model.net.dim=8"]).model, resolve=True)
    torch.manual_seed(0)
    model = instantiate(config)
    model.model_config = config
    ckpt = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(ckpt)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save(ckpt, path)
    return path, model, config


def test_the_mixin_writes_the_config_under_the_one_key(saved):
    path, _, config = saved
    assert torch.load(path, weights_only=True)[MODEL_CONFIG_KEY] == config
    plain = DiffUIRModule.__new__(DiffUIRModule)  # no model_config set: nothing written
    ckpt: dict = {}
    checkpoints.StoredConfigMixin.on_save_checkpoint(plain, ckpt)
    assert ckpt == {}


def test_a_load_checks_the_stored_config_once(saved, monkeypatch):
    path, model, _ = saved
    calls = []
    real = checkpoints.validate_model_config
    monkeypatch.setattr(checkpoints, "validate_model_config", lambda *a, **k: (calls.append(a[1:]), real(*a, **k)))
    loaded = load_restoration_model(path)
    assert len(calls) == 1
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_from_checkpoint_is_the_loader_and_refuses_another_class(saved):
    path, model, _ = saved
    loaded = DiffUIRModule.from_checkpoint(path)
    assert isinstance(loaded, DiffUIRModule) and not loaded.training
    assert torch.equal(loaded.net.head.weight, model.net.head.weight)
    with pytest.raises(CheckpointError, match=r"tiny.ckpt holds a DiffUIRModule, not a DiffRestorerStage1"):
        DiffRestorerStage1.from_checkpoint(path)
    with pytest.raises(TypeError, match="DiffUIRModule.from_checkpoint takes no sd_dir"):
        DiffUIRModule.from_checkpoint(path, sd_dir="elsewhere")


def test_stage_overrides_edit_the_stored_config_before_it_is_built():
    config = {"_target_": "x", "unet": {"sd_dir": "a"}, "vae": {"sd_dir": "a"}, "clip": {"weights": "c.pt"}}
    DiffRestorerStage1.edit_stored_config(config, sd_dir="/new/sd", clip_weights="/new/clip.pt")
    assert config["unet"]["sd_dir"] == config["vae"]["sd_dir"] == "/new/sd"
    assert config["clip"]["weights"] == "/new/clip.pt"
    from src.diff_restorer.stage2 import DiffRestorerStage2

    stage2 = {"_target_": "x", "vae": {"sd_dir": "a"}, "clip": {"weights": "c"}, "stage1_ckpt": "s1.ckpt"}
    DiffRestorerStage2.edit_stored_config(stage2, sd_dir="/sd", eval_mode="reconstruction")
    assert stage2["vae"]["sd_dir"] == "/sd" and stage2["eval_mode"] == "reconstruction"
    assert stage2["stage1_ckpt"] is None and stage2["clip"]["weights"] == "c"
