"""Stable Diffusion 1.5 components: loading from a local diffusers folder, and tiny random builders for tests.

The real model reads a diffusers-format copy of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (only ``unet/``,
``vae/`` and ``scheduler/`` are used) with ``local_files_only=True``: nothing is ever downloaded at run time.
The tiny builders make small random-initialised models with the same classes (seeded, so a rebuild from a
checkpoint's config gives the same frozen weights), for tests and CPU demos.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"

# SD-1.5's noise schedule (its scheduler/scheduler_config.json): what L_diff is trained with and UniPC samples with.
SD15_NOISE_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                       "beta_schedule": "scaled_linear"}

# UNet2DConditionModel's defaults are SD-1.5's shape except cross_attention_dim (1280 by default, 768 in SD-1.5).
SD15_UNET_CONFIG = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 768, "attention_head_dim": 8,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}

_WEIGHT_PATTERNS = ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")


def missing_sd_message(sd_dir: str | Path, problem: str) -> str:
    return (
        f"Stable Diffusion 1.5 weights not usable at {sd_dir}: {problem}.\n"
        f"Diff-Restorer needs a local diffusers-format copy of `{SD15_REPO}` (subfolders unet/, vae/, scheduler/; "
        "the text encoder is not used), e.g.\n"
        f"  huggingface-cli download {SD15_REPO} --include 'unet/*' 'vae/*' 'scheduler/*' "
        "'model_index.json' --local-dir <weights_dir>/stable-diffusion-v1-5\n"
        "where <weights_dir> is paths.weights_dir (the UIR_WEIGHTS environment variable, default ./weights), "
        "i.e. the config expects it at ${paths.weights_dir}/stable-diffusion-v1-5. "
        "For a run without any download use experiment=diff_restorer_stage1_tiny."
    )


def check_sd_subfolder(sd_dir: str | Path, subfolder: str) -> Path:
    """``sd_dir/subfolder`` if it holds a diffusers config and weights; one clear FileNotFoundError otherwise."""
    folder = Path(sd_dir) / subfolder
    if not Path(sd_dir).is_dir():
        raise FileNotFoundError(missing_sd_message(sd_dir, "the folder does not exist"))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(missing_sd_message(sd_dir, f"{subfolder}/config.json is missing"))
    if not any(any(folder.glob(p)) for p in _WEIGHT_PATTERNS):
        raise FileNotFoundError(missing_sd_message(
            sd_dir, f"{subfolder}/ has no diffusion_pytorch_model.safetensors (or .bin) weights file"))
    return folder


def _from_pretrained(cls, sd_dir: str | Path, subfolder: str, variant: str | None, dtype: str | None):
    check_sd_subfolder(sd_dir, subfolder)
    kwargs = {"torch_dtype": getattr(torch, dtype)} if dtype else {}
    model = cls.from_pretrained(str(sd_dir), subfolder=subfolder, local_files_only=True, variant=variant, **kwargs)
    return model.requires_grad_(False).eval()


def load_unet(sd_dir: str | Path, variant: str | None = None, dtype: str | None = None) -> UNet2DConditionModel:
    """The SD-1.5 denoising U-Net from ``sd_dir/unet`` (frozen; Diff-Restorer unfreezes it only if asked)."""
    return _from_pretrained(UNet2DConditionModel, sd_dir, "unet", variant, dtype)


def load_vae(sd_dir: str | Path, variant: str | None = None, dtype: str | None = None) -> AutoencoderKL:
    """The SD-1.5 VAE from ``sd_dir/vae`` (frozen)."""
    return _from_pretrained(AutoencoderKL, sd_dir, "vae", variant, dtype)


def seeded(seed: int | None, build: Callable):
    """``build()`` with torch's CPU generator seeded (and restored afterwards): identical weights every call."""
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def tiny_unet(block_out_channels=(32, 64), cross_attention_dim: int = 32, attention_head_dim: int = 8,
              layers_per_block: int = 1, norm_num_groups: int = 8, sample_size: int = 8,
              seed: int | None = 0) -> UNet2DConditionModel:
    """A small random SD-style U-Net (cross-attention in the first level, plain ResNet blocks in the others)."""
    n = len(block_out_channels)
    down = ("CrossAttnDownBlock2D",) + ("DownBlock2D",) * (n - 1)
    up = ("UpBlock2D",) * (n - 1) + ("CrossAttnUpBlock2D",)
    config = {"sample_size": sample_size, "in_channels": 4, "out_channels": 4, "layers_per_block": layers_per_block,
              "block_out_channels": tuple(block_out_channels), "down_block_types": down, "up_block_types": up,
              "cross_attention_dim": cross_attention_dim, "attention_head_dim": attention_head_dim,
              "norm_num_groups": norm_num_groups}
    return seeded(seed, lambda: UNet2DConditionModel(**config)).requires_grad_(False).eval()


def tiny_vae(block_out_channels=(8, 16, 16, 16), latent_channels: int = 4, norm_num_groups: int = 8,
             seed: int | None = 0) -> AutoencoderKL:
    """A small random AutoencoderKL with SD's ×8 down-sampling (four levels) and 4 latent channels."""
    n = len(block_out_channels)
    config = {"block_out_channels": tuple(block_out_channels), "latent_channels": latent_channels,
              "down_block_types": ("DownEncoderBlock2D",) * n, "up_block_types": ("UpDecoderBlock2D",) * n,
              "layers_per_block": 1, "norm_num_groups": norm_num_groups, "sample_size": 32}
    return seeded(seed, lambda: AutoencoderKL(**config)).requires_grad_(False).eval()


def sd15_shaped_unet(seed: int | None = 0) -> UNet2DConditionModel:
    """A full-size SD-1.5-shaped U-Net with random weights (parameter counts, memory checks)."""
    return seeded(seed, lambda: UNet2DConditionModel(**SD15_UNET_CONFIG)).requires_grad_(False).eval()


SD15_VAE_CONFIG = {
    "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 4, "sample_size": 512,
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
}


def sd15_shaped_vae(seed: int | None = 0) -> AutoencoderKL:
    """A full-size SD-1.5-shaped VAE with random weights."""
    return seeded(seed, lambda: AutoencoderKL(**SD15_VAE_CONFIG)).requires_grad_(False).eval()
