"""The stage-1 LightningModule on the tiny config: losses, training, sampling, checkpoints."""

import pytest
import torch

from src.diff_restorer.stage1 import DiffRestorerStage1
from src.utils.checkpoints import load_model_from_checkpoint
from tests.diff_restorer.conftest import batch, build_tiny


def _losses(model, b, seed=1):
    with torch.no_grad():
        return {k: float(v) for k, v in model.compute_losses(b, torch.Generator().manual_seed(seed)).items()}


def test_loss_is_eq7_and_falls_in_a_few_steps():
    torch.manual_seed(0)
    model = build_tiny(["model.optimizer.lr=1e-3"]).train()
    b = batch(4, 32)
    before = _losses(model, b)
    assert before.keys() == {"loss", "l_diff", "l_deg", "l_rec", "deg_acc"}
    assert before["loss"] == pytest.approx(before["l_diff"] + before["l_deg"] + before["l_rec"], rel=1e-6)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    for step in range(12):
        optimizer.zero_grad()
        model.compute_losses(b, torch.Generator().manual_seed(100 + step))["loss"].backward()
        optimizer.step()
    after = _losses(model, b)
    for key in ("loss", "l_diff", "l_deg", "l_rec"):
        assert after[key] < before[key], (key, before, after)


def test_only_the_new_parts_are_trained_and_saved():
    model = build_tiny()
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_processor", "control_encoder", "control_decoder", "control_network"}
    opt_params = sum(p.numel() for g in model.configure_optimizers().param_groups for p in g["params"])
    assert opt_params == model.parameter_counts()["trainable"]
    assert {k.split(".")[0] for k in model.state_dict()} == trainable
    model.train()
    assert not (model.unet.training or model.vae.training or model.clip.training)
    assert model.control_network.training
    with_unet = build_tiny(["model.train_unet=true"])
    assert all(p.requires_grad for p in with_unet.unet.parameters())
    assert any(k.startswith("unet.") for k in with_unet.state_dict())
    assert with_unet.parameter_counts()["trainable"] == model.parameter_counts()["trainable"] + sum(
        p.numel() for p in model.unet.parameters())


def test_gradient_checkpointing_trains():
    model = build_tiny(["model.gradient_checkpointing=true"]).train()
    assert model.unet.is_gradient_checkpointing and model.control_network.controlnet.is_gradient_checkpointing
    model.compute_losses(batch(2, 32))["loss"].backward()
    assert model.control_network.controlnet.controlnet_mid_block.weight.grad is not None


def test_restore_returns_images_in_range_at_odd_sizes(tiny_model):
    for shape in [(1, 3, 37, 53), (2, 3, 30, 45), (1, 3, 7, 9)]:
        lq = torch.rand(*shape)
        out = tiny_model.restore(lq, steps=4, generator=torch.Generator().manual_seed(0))
        assert out.shape == shape and torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    lq = torch.rand(1, 3, 33, 35)
    a = tiny_model.restore(lq, generator=torch.Generator().manual_seed(3))
    b = tiny_model.restore(lq, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert tiny_model.pad_multiple == 16  # VAE ×8 · 2^(U-Net levels − 1)
    assert tiny_model.sampler().__class__.__name__ == "UniPCMultistepScheduler"
    assert tiny_model.hparams.sampling_steps == 20


def test_detect_degradation_names_tasks(tiny_model):
    names = tiny_model.detect_degradation(torch.rand(3, 3, 40, 40))
    assert len(names) == 3 and set(names) <= set(tiny_model.task_names)


def _perturb_trainable(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)


def test_checkpoint_round_trip_rebuilds_identical_model(tmp_path):
    model = build_tiny()
    _perturb_trainable(model)  # zero convolutions no longer zero: the control reaches the output
    ckpt = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "m.ckpt")
    lq = torch.rand(2, 3, 37, 41)
    expected = model.eval().restore(lq, steps=5, generator=torch.Generator().manual_seed(7))
    for loaded in (load_model_from_checkpoint(tmp_path / "m.ckpt"),
                   DiffRestorerStage1.from_checkpoint(tmp_path / "m.ckpt")):
        got = loaded.restore(lq, steps=5, generator=torch.Generator().manual_seed(7))
        assert torch.equal(got, expected)
    fresh = build_tiny().eval()
    assert not torch.equal(fresh.restore(lq, steps=5, generator=torch.Generator().manual_seed(7)), expected)
    state = dict(ckpt["state_dict"])
    state.pop(next(iter(state)))
    with pytest.raises(RuntimeError, match="missing keys"):
        fresh.load_state_dict(state)


def test_null_degradation_embedding_makes_control_independent_of_pd():
    model = build_tiny(["model.null_degradation_embedding=true"])
    _perturb_trainable(model)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(model.control_features(x, torch.randn(1, 16)), model.control_features(x, torch.randn(1, 16)))
