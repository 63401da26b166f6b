"""Stage-2 building blocks: DRB (Eq. 5), the Degradation-aware Decoder, the PatchGAN, the VGG-19 loss."""

import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from src.diff_restorer.decoder import (
    ConsistencyDecoder,
    DegradationAwareDecoder,
    encode_with_features,
    lq_feature_channels,
)
from src.diff_restorer.discriminator import NLayerDiscriminator, discriminator_loss, generator_adversarial_loss
from src.diff_restorer.drb import DegradationAwareRefinementBlock
from src.diff_restorer.perceptual_loss import VGG19_FILE, VGGPerceptualLoss, vgg19_layer_names
from src.diff_restorer.sd_loading import SD15_VAE_CONFIG, tiny_vae


def _perturb(module, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def test_drb_shapes_identity_at_init_and_dependence_after_training():
    drb = DegradationAwareRefinementBlock(channels=32, lq_channels=16, degradation_dim=8, norm_num_groups=8)
    z, z_lq, p_d = torch.randn(2, 32, 8, 10), torch.randn(2, 16, 8, 10), torch.randn(2, 8)
    out = drb(z, z_lq, p_d)
    assert out.shape == z.shape and torch.equal(out, z)  # z̃ = z and a zero last conv: ẑ = z
    assert drb.modulation_vector(p_d).shape == (2, 32)
    _perturb(drb)
    out = drb(z, z_lq, p_d)
    assert not torch.equal(out, z)
    assert not torch.equal(out, drb(z, torch.randn_like(z_lq), p_d))  # the LQ features matter
    assert not torch.equal(out, drb(z, z_lq, torch.randn(2, 8)))  # and so does P_D
    with pytest.raises(ValueError, match="differ"):
        drb(z, torch.randn(2, 16, 4, 5), p_d)


def test_drb_gradients_reach_every_new_part_after_one_step():
    drb = DegradationAwareRefinementBlock(16, 8, 4, norm_num_groups=4)
    z, z_lq, p_d = torch.randn(2, 16, 6, 6), torch.randn(2, 8, 6, 6), torch.randn(2, 4)
    opt = torch.optim.SGD(drb.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        (drb(z, z_lq, p_d) - torch.randn(2, 16, 6, 6)).pow(2).mean().backward()
        opt.step()
    grads = {n: p.grad.abs().sum().item() for n, p in drb.named_parameters()}
    assert all(v > 0 for v in grads.values()), grads


def test_encode_with_features_is_vae_encode_plus_three_scales():
    vae = tiny_vae()
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    posterior, feats = encode_with_features(vae, x)
    reference = vae.encode(x).latent_dist
    assert torch.equal(posterior.mean, reference.mean) and torch.equal(posterior.logvar, reference.logvar)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 8, 12), (2, 16, 16, 24), (2, 8, 32, 48)]
    assert lq_feature_channels(vae) == [16, 16, 8]


@pytest.mark.parametrize("refinement", [True, False])
def test_decoder_loads_sd_decoder_weights_and_equals_it_at_init(refinement):
    vae = tiny_vae()
    decoder = DegradationAwareDecoder(vae, degradation_dim=16, refinement=refinement)
    sd = vae.decoder.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in decoder.decoder.state_dict().items())
    assert torch.equal(decoder.post_quant_conv.weight, vae.post_quant_conv.weight)
    assert (decoder.drbs is not None) == refinement and len(decoder.new_modules()) == 3 * refinement
    lq = torch.rand(2, 3, 40, 56) * 2 - 1
    feats = encode_with_features(vae, lq)[1]
    z = torch.randn(2, 4, 5, 7)
    assert torch.equal(decoder(z, feats, torch.randn(2, 16)), vae.decode(z).sample)  # bit-exact SD decoder
    assert all(p.requires_grad for p in decoder.parameters())
    _perturb(decoder)  # a copy: training it leaves the frozen VAE untouched
    assert torch.equal(vae.decoder.state_dict()["conv_out.weight"], sd["conv_out.weight"])
    assert not torch.equal(decoder(z, feats, torch.randn(2, 16)), vae.decode(z).sample)
    if refinement:
        with pytest.raises(ValueError, match="encoder features"):
            decoder(z, None, None)


def test_sd15_sized_decoder_parameter_counts():
    from diffusers import AutoencoderKL

    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
        full = DegradationAwareDecoder(vae, degradation_dim=256)
        plain = DegradationAwareDecoder(vae, degradation_dim=256, refinement=False)
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in
         {"vae": vae, "full": full, "plain": plain, "drbs": full.drbs}.items()}
    print("\nSD-1.5 sizes:", {k: f"{v:,}" for k, v in n.items()})
    assert n["plain"] == sum(p.numel() for p in vae.decoder.parameters()) + sum(
        p.numel() for p in vae.post_quant_conv.parameters())
    assert n["full"] == n["plain"] + n["drbs"]
    assert [tuple(d.fuse.weight.shape[:2]) for d in full.drbs] == [(512, 1024), (512, 768), (256, 384)]


def test_consistency_decoder_missing_weights_is_reported(tmp_path):
    dec = ConsistencyDecoder(path=tmp_path / "nope", refinement=True)
    assert not dec.available and "openai/consistency-decoder" in dec.reason and str(tmp_path / "nope") in dec.reason
    with pytest.raises(FileNotFoundError, match="consistency-decoder"):
        ConsistencyDecoder(path=tmp_path / "nope", missing_ok=False)


def test_patchgan_shapes_and_losses():
    d = NLayerDiscriminator(base_channels=8, n_layers=3)
    out = d(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert out.shape == (2, 1, 6, 6)  # 64 → 32 → 16 → 8 → 7 → 6: one logit per 70×70 patch
    real, fake = torch.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), -2.0)
    assert discriminator_loss(real, fake, "hinge") == 0 and generator_adversarial_loss(fake, "hinge") == 2
    assert discriminator_loss(real, fake, "vanilla") < discriminator_loss(fake, real, "vanilla")
    with pytest.raises(ValueError):
        discriminator_loss(real, fake, "wgan")


def test_vgg_perceptual_loss_weights_file(tmp_path):
    missing = tmp_path / "weights" / VGG19_FILE
    with pytest.raises(FileNotFoundError) as err:
        VGGPerceptualLoss(weights=missing)
    assert str(missing) in str(err.value) and "vgg19-dcbaabe7.pth" in str(err.value)
    assert "download.pytorch.org" in str(err.value) and "weights_dir" in str(err.value)
    # a torchvision-format file ("features.N.*" keys, classifier ignored) loads
    torch.manual_seed(3)
    features = make_layers(cfgs["E"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)
    missing.parent.mkdir(parents=True)
    torch.save(state, missing)
    loss = VGGPerceptualLoss(weights=missing)
    assert torch.equal(loss.features[0].weight, features[0].weight)
    assert len(loss.features) == vgg19_layer_names().index("conv5_4") + 1
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert loss(x, x) == 0
    pred = x.clone().requires_grad_(True)
    value = loss(pred, y)
    value.backward()
    assert value > 0 and pred.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    with pytest.raises(ValueError, match="unknown VGG-19 layers"):
        VGGPerceptualLoss(layer_weights={"conv6_1": 1.0})
