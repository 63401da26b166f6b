"""SD-1.5 weights in both layouts users download: a diffusers folder and one original-layout checkpoint file
(``v1-5-pruned-emaonly.safetensors`` / ``.ckpt``), read through diffusers' single-file converters."""

from __future__ import annotations

import logging

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from src.diff_restorer.sd_loading import (
    SD15_UNET_CONFIG,
    SD15_VAE_CONFIG,
    load_unet,
    load_vae,
    save_single_file,
    tiny_unet,
    tiny_vae,
    unet_to_original_keys,
    vae_to_original_keys,
)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("layers_per_block", [1, 2])
def test_single_file_round_trip_gives_the_same_models_and_says_so(layers_per_block, tmp_path, caplog):
    unet = tiny_unet(block_out_channels=(32, 64, 64), layers_per_block=layers_per_block, seed=1)
    vae = tiny_vae(seed=2)
    path = save_single_file(tmp_path / "v1-5-pruned-emaonly.safetensors", unet, vae)
    with caplog.at_level(logging.INFO, logger="src.diff_restorer.sd_loading"):
        unet2 = load_unet(path, config=dict(unet.config))
        vae2 = load_vae(path, config=dict(vae.config))
    _same(unet, unet2)
    _same(vae, vae2)
    assert not any(p.requires_grad for p in unet2.parameters()) and not unet2.training
    assert caplog.text.count("single original-layout file") == 2
    x, t, c = torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(unet2(x, t, c).sample, unet(x, t, c).sample)


def test_ckpt_file_and_diffusers_folder_are_read_too(tmp_path, caplog):
    unet, vae = tiny_unet(seed=3), tiny_vae(seed=4)
    sd = {**unet_to_original_keys(unet), **vae_to_original_keys(vae)}
    torch.save({"state_dict": sd}, tmp_path / "sd.ckpt")
    _same(vae, load_vae(tmp_path / "sd.ckpt", config=dict(vae.config)))
    unet.save_pretrained(tmp_path / "folder" / "unet")
    with caplog.at_level(logging.INFO, logger="src.diff_restorer.sd_loading"):
        _same(unet, load_unet(tmp_path / "folder"))
    assert "diffusers folder" in caplog.text


def test_a_file_without_sd_tensors_or_of_another_shape_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="no tensor starts with 'model.diffusion_model.'"):
        load_unet(tmp_path / "other.safetensors")
    path = save_single_file(tmp_path / "tiny.safetensors", tiny_unet(), tiny_vae())
    with pytest.raises(ValueError, match="do not fit"):
        load_vae(path)  # SD-1.5's VAE config, tiny tensors
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="single-file checkpoint"):
        load_unet(tmp_path / "weights.txt")


def test_full_size_original_names_are_sd15s():
    """The full-size SD-1.5 U-Net / VAE map to the original checkpoint's 686 / 248 tensors (shapes only)."""
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**SD15_UNET_CONFIG), AutoencoderKL(**SD15_VAE_CONFIG)
    ku, kv = unet_to_original_keys(unet), vae_to_original_keys(vae)
    assert (len(ku), len(kv)) == (686, 248)
    assert sum(t.numel() for t in ku.values()) == 859_520_964
    assert ku["model.diffusion_model.output_blocks.2.1.conv.weight"].shape == (1280, 1280, 3, 3)
    assert ku["model.diffusion_model.input_blocks.4.0.skip_connection.weight"].shape == (640, 320, 1, 1)
    assert kv["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert kv["first_stage_model.decoder.up.0.block.0.nin_shortcut.weight"].shape == (128, 256, 1, 1)


def test_a_checkpoint_naming_the_single_sd_file_is_accepted_when_loaded(tmp_path):
    """Found by `make rehearse`: stage 1 trained from `v1-5-pruned-emaonly.safetensors` stores that file as
    `unet.sd_dir`; the stored-config check refused it ("must name a local folder"), so the resume and stage 2 failed.
    A file or a folder is accepted; a pipe is not."""
    import os

    from src.utils.checkpoints import UnsafeCheckpointError, validate_model_config

    single = save_single_file(tmp_path / "v1-5-pruned-emaonly.safetensors", tiny_unet(), tiny_vae())
    for where in (single, tmp_path):
        validate_model_config({"_target_": "src.diff_restorer.sd_loading.load_unet", "sd_dir": str(where)})
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UnsafeCheckpointError, match="sd_dir"):
        validate_model_config({"_target_": "src.diff_restorer.sd_loading.load_unet", "sd_dir": str(tmp_path / "pipe")})


def test_the_loaders_meta_probe_builds_a_named_clip_without_reading_its_file(tmp_path):
    """Found by `make rehearse`: stage 2 loads its stage-1 checkpoint through the loader's shapes-only probe on the
    meta device; with the full-size named CLIP (ViT-L/14 from a file) open_clip copied meta tensors and the run
    died ("Cannot copy out of meta tensor"). On meta the architecture is built and the file is not read."""
    from src.diff_restorer.clip_encoder import CLIPImageEncoder

    garbage = tmp_path / "open_clip_pytorch_model.bin"
    garbage.write_bytes(b"not a checkpoint")  # would fail to load if it were read
    with torch.device("meta"):
        encoder = CLIPImageEncoder("ViT-L-14-quickgelu", weights=garbage)
    assert encoder.embed_dim == 768 and all(p.is_meta for p in encoder.parameters())
    assert sum(p.numel() for p in encoder.visual.parameters()) == 303_966_208  # ViT-L/14's image tower
    with pytest.raises(FileNotFoundError):  # a missing file is still named, on meta too
        with torch.device("meta"):
            CLIPImageEncoder("ViT-L-14-quickgelu", weights=tmp_path / "missing.bin")
