"""Full-size stage 1 (SD-1.5-shaped U-Net and VAE, CLIP ViT-L/14, paper-sized control module), random weights.

Slow (a few minutes and ~8 GB of RAM on CPU): ``pytest -m slow tests/diff_restorer/test_full_size.py -s``.
Prints the trainable / frozen parameter counts.
"""

import open_clip
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from tests.conftest import compose_train


@pytest.mark.slow
def test_sd15_shaped_model_parameter_counts_and_zero_control(tmp_path):
    cfg = compose_train(["experiment=diff_restorer_stage1",
                         "model.clip.weights=null"], tmp_path)
    with open_dict(cfg):  # the paper's config with random SD-1.5-shaped backbones in place of the files
        cfg.model.unet = {"_target_": "src.diff_restorer.sd_loading.sd15_shaped_unet"}
        cfg.model.vae = {"_target_": "src.diff_restorer.sd_loading.sd15_shaped_vae"}
        cfg.model.clip.model_cfg = open_clip.get_model_config("ViT-L-14-quickgelu")
    model = instantiate(cfg.model).eval()
    counts = model.parameter_counts()
    print("\nDiff-Restorer stage 1, SD-1.5 shapes:")
    for name, n in counts.items():
        print(f"  {name:18s} {n:>13,d}  ({n / 1e6:.2f} M)")
    assert counts["unet"] == 859_520_964  # SD-1.5's U-Net
    assert counts["vae"] == 83_653_863  # SD-1.5's VAE
    assert counts["clip"] == 303_966_208  # CLIP ViT-L/14 image tower
    assert counts["frozen"] == counts["unet"] + counts["vae"] + counts["clip"]
    assert counts["trainable"] == sum(counts[k] for k in ("prompt_processor", "control_encoder", "control_decoder",
                                                          "control_network"))
    assert model.prompt_processor.semantic_dim == 768 and model.prompt_processor.degradation_dim == 256

    lq = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        prompts = model.visual_prompts(lq)
        assert prompts["p_clip"].shape == (1, 768) and prompts["p_s"].shape == (1, 768)
        control = model.control_features(lq, prompts["p_d"])
        assert control.shape == (1, 256, 8, 8)
        z, t, ctx = torch.randn(1, 4, 8, 8), torch.tensor([500]), prompts["p_s"][:, None]
        plain = model.unet(z, t, encoder_hidden_states=ctx).sample
        assert torch.equal(plain, model.predict_noise(z, t, ctx, control))  # zero convolutions at init
        losses = model.compute_losses({"lq": lq, "gt": lq, "task": torch.tensor([2])},
                                      torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in losses.values())
