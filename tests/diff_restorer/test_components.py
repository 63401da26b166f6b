"""Shapes and defining properties of every Diff-Restorer component (paper §III-B, §III-C, Eq. 2–4)."""

import numpy as np
import pytest
import torch
from torch import nn

from src.diff_restorer.clip_encoder import TINY_CLIP_CONFIG, CLIPImageEncoder
from src.diff_restorer.control_decoder import ControlDecoder
from src.diff_restorer.control_encoder import ControlEncoder
from src.diff_restorer.control_module import ImageControlNetwork
from src.diff_restorer.degradation_modulation import DegradationModulation, ResBlock
from src.diff_restorer.prompt_processor import PromptProcessor
from src.diff_restorer.sd_loading import check_sd_subfolder, load_unet, tiny_unet, tiny_vae


def _linear_layout(seq: nn.Sequential) -> list[str]:
    return [type(m).__name__ for m in seq]


def test_prompt_processor_branches_shapes_and_loss():
    pp = PromptProcessor(in_dim=48, semantic_dim=40, num_classes=8, degradation_dim=16)
    p_s, p_d, logits = pp(torch.randn(5, 48))
    assert (p_s.shape, p_d.shape, logits.shape) == ((5, 40), (5, 16), (5, 8))
    block = ["Linear", "LayerNorm", "LeakyReLU"]
    assert _linear_layout(pp.semantic) == [*block, *block, "Linear"]  # B_s: three layers, none after the last
    assert _linear_layout(pp.degradation) == [*block, "Linear"]  # B_d: two layers
    assert isinstance(pp.classifier, nn.Linear) and pp.classifier.out_features == 8  # C: one Linear over N
    labels = torch.tensor([0, 1, 2, 3, 7])
    torch.testing.assert_close(pp.degradation_loss(logits, labels), nn.functional.cross_entropy(logits, labels))


def test_prompt_processor_paper_sizes_and_without_semantic_branch():
    pp = PromptProcessor(in_dim=768)  # ViT-L/14 image embedding → P_S ∈ R^768, P_D ∈ R^256
    p_s, p_d, _ = pp(torch.randn(2, 768))
    assert p_s.shape == (2, 768) and p_d.shape == (2, 256)
    same = PromptProcessor(in_dim=768, semantic_branch=False)
    x = torch.randn(2, 768)
    assert isinstance(same.semantic, nn.Identity) and torch.equal(same(x)[0], x)  # P_CLIP fed directly
    proj = PromptProcessor(in_dim=48, semantic_dim=32, semantic_branch=False)
    assert isinstance(proj.semantic, nn.Linear) and proj(torch.randn(2, 48))[0].shape == (2, 32)


def test_dmb_scales_each_channel_by_sigmoid_of_linear_pd_then_resblock():
    torch.manual_seed(0)
    dmb = DegradationModulation(channels=6, degradation_dim=4)
    x, p_d = torch.randn(2, 6, 5, 7), torch.randn(2, 4)
    f = torch.sigmoid(dmb.linear(p_d))  # f = Sigmoid(Linear(P_D)), one weight per channel
    assert f.shape == (2, 6)
    torch.testing.assert_close(dmb(x, p_d), dmb.block(x * f[:, :, None, None]))  # F̂ = ResBlock(F̃ ⊗ f)
    dmb.block = nn.Identity()  # the product alone: every channel of every sample scaled by its own f
    ratio = dmb(x, p_d) / x
    torch.testing.assert_close(ratio, f[:, :, None, None].expand_as(x))
    with torch.no_grad():
        dmb.linear.weight.zero_()
        dmb.linear.bias.copy_(torch.tensor([-30.0, 0, 30, 0, 0, 0]))
    out = dmb(x, p_d)
    assert out[:, 0].abs().max() < 1e-8 and torch.allclose(out[:, 1], x[:, 1] / 2)
    assert torch.allclose(out[:, 2], x[:, 2])


def test_dmb_without_modulation_is_the_residual_block():
    dmb = DegradationModulation(channels=6, degradation_dim=4, modulation=False)
    x = torch.randn(1, 6, 5, 5)
    assert dmb.linear is None
    torch.testing.assert_close(dmb(x, torch.randn(1, 4)), dmb.block(x))
    block = ResBlock(3, 5)
    assert block(torch.randn(2, 3, 4, 4)).shape == (2, 5, 4, 4)


@pytest.mark.parametrize("modulation", [True, False])
def test_control_encoder_to_latent_grid_and_decoder_back(modulation):
    enc = ControlEncoder(degradation_dim=16, channels=(8, 16, 16, 32), modulation=modulation)
    assert len(enc.blocks) == 4 and len(enc.dmbs) == 4 and enc.downsample_factor == 8
    lq = torch.rand(2, 3, 64, 48)
    p1, p2 = torch.randn(2, 16), torch.randn(2, 16)
    feat = enc(lq, p1)
    assert feat.shape == (2, 32, 8, 6)
    assert torch.equal(feat, enc(lq, p2)) != modulation  # P_D matters exactly when the DMBs modulate
    dec = ControlDecoder(in_channels=32, channels=(32, 16, 16, 8))
    assert len(dec.blocks) == 4
    rec = dec(feat)
    assert rec.shape == (2, 3, 64, 48)
    assert dec.loss(rec, lq).ndim == 0
    with pytest.raises(ValueError, match="multiple of 8"):
        enc(torch.rand(1, 3, 60, 64), p1[:1])


def test_control_network_at_init_leaves_the_unet_output_exactly_unchanged():
    unet = tiny_unet()
    net = ImageControlNetwork.from_unet(unet, control_channels=32)
    # the trainable copy starts from the U-Net's encoder weights (ControlNet)
    for a, b in zip(net.controlnet.down_blocks.parameters(), unet.down_blocks.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    assert all(float(p.detach().abs().max()) == 0 for m in net.zero_convolutions() for p in m.parameters())
    z, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.randn(2, 1, 32)
    control = torch.randn(2, 32, 8, 8)
    down, mid = net(z, t, ctx, control)
    assert len(down) == 1 + sum(len(b.resnets) + (b.downsamplers is not None) for b in unet.down_blocks)
    with torch.no_grad():
        plain = unet(z, t, encoder_hidden_states=ctx).sample
        controlled = unet(z, t, encoder_hidden_states=ctx, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample
    assert torch.equal(plain, controlled)
    with torch.no_grad():  # once the zero convolutions move, the control reaches the U-Net
        for m in net.zero_convolutions():
            m.weight.normal_(0, 0.1)
        down, mid = net(z, t, ctx, control)
        moved = unet(z, t, encoder_hidden_states=ctx, down_block_additional_residuals=down,
                     mid_block_additional_residual=mid).sample
    assert not torch.allclose(plain, moved)


def test_clip_encoder_preprocesses_batches_of_any_size_and_is_frozen():
    enc = CLIPImageEncoder(model_cfg=TINY_CLIP_CONFIG)
    x = torch.rand(3, 3, 45, 61)
    pre = enc.preprocess(x)
    assert pre.shape == (3, 3, 32, 32)
    assert enc(x).shape == (3, 32) and enc.embed_dim == 32
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training and not enc.visual.training
    assert enc.model is None  # text tower dropped unless keep_text
    again = CLIPImageEncoder(model_cfg=TINY_CLIP_CONFIG)  # seeded: same random weights
    assert torch.equal(enc(x), again(x))
    unit = CLIPImageEncoder(model_cfg=TINY_CLIP_CONFIG, normalize=True)
    torch.testing.assert_close(unit(x).norm(dim=-1), torch.ones(3))


def test_clip_preprocess_matches_open_clip_transform():
    """The in-tensor resize/crop/normalise agrees with open_clip's PIL pipeline (up to resampling details)."""
    import open_clip
    from PIL import Image

    enc = CLIPImageEncoder(model_cfg=TINY_CLIP_CONFIG)
    yy, xx = np.mgrid[0:45, 0:61] / 60.0
    img = np.stack([xx, yy, (xx + yy) / 2], -1).astype(np.float32)  # smooth ramps
    transform = open_clip.image_transform(32, is_train=False)
    ref = transform(Image.fromarray((img * 255).round().astype(np.uint8)))
    ours = enc.preprocess(torch.from_numpy((img * 255).round() / 255).permute(2, 0, 1)[None])[0]
    assert (ours - ref).abs().mean() < 0.01


def test_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="vit_large_patch14_clip_224.openai") as err:
        CLIPImageEncoder("ViT-L-14-quickgelu", weights=tmp_path / "nope.bin")
    assert str(tmp_path / "nope.bin") in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        load_unet(tmp_path / "sd")
    msg = str(err.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in msg and "unet/" in msg and "vae/" in msg
    assert "${paths.weights_dir}/stable-diffusion-v1-5" in msg and str(tmp_path / "sd") in msg
    (tmp_path / "sd" / "unet").mkdir(parents=True)
    (tmp_path / "sd" / "unet" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no diffusion_pytorch_model.safetensors"):
        check_sd_subfolder(tmp_path / "sd", "unet")


def test_sd_folder_round_trip_with_local_files_only(tmp_path):
    """load_unet/load_vae read a diffusers folder (written here from the tiny models) without any network."""
    from src.diff_restorer.sd_loading import load_vae

    unet, vae = tiny_unet(), tiny_vae()
    unet.save_pretrained(tmp_path / "unet")
    vae.save_pretrained(tmp_path / "vae")
    loaded_unet, loaded_vae = load_unet(tmp_path), load_vae(tmp_path)
    assert not any(p.requires_grad for p in loaded_unet.parameters())
    for a, b in zip(unet.state_dict().values(), loaded_unet.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(vae.state_dict().values(), loaded_vae.state_dict().values()):
        assert torch.equal(a, b)


def test_tiny_builders_are_seeded():
    a, b = tiny_vae(seed=3), tiny_vae(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    c = tiny_vae(seed=4)
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))
