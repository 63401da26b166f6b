"""Stable Diffusion 1.5 components: loading from local files, and tiny random builders for tests.

The real model reads either layout users download, and logs which one it read (nothing is ever downloaded):

* a diffusers-format folder of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (only ``unet/`` and ``vae/`` are
  used), read with ``from_pretrained(..., local_files_only=True)``;
* a single original-layout checkpoint such as ``v1-5-pruned-emaonly.safetensors`` (or ``.ckpt``; keys
  ``model.diffusion_model.*`` and ``first_stage_model.*``), converted by diffusers' own single-file converters
  (``convert_ldm_unet_checkpoint`` / ``convert_ldm_vae_checkpoint``) into the SD-1.5 architecture.

The tiny builders make small random-initialised models with the same classes (seeded, so a rebuild from a
checkpoint's config gives the same frozen weights), for tests and CPU demos.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    DIFFUSERS_TO_LDM_MAPPING,
    LDM_UNET_KEY,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)

log = logging.getLogger(__name__)

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
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
LDM_VAE_KEY = "first_stage_model."  # the VAE's prefix in an original SD checkpoint (the U-Net's: LDM_UNET_KEY)


def missing_sd_message(sd_dir: str | Path, problem: str) -> str:
    return (
        f"Stable Diffusion 1.5 weights not usable at {sd_dir}: {problem}.\n"
        f"Diff-Restorer needs a local diffusers-format copy of `{SD15_REPO}` (subfolders unet/, vae/, scheduler/; "
        "the text encoder is not used), or its single original checkpoint file (v1-5-pruned-emaonly.safetensors "
        "or .ckpt: point sd_dir at the file), e.g.\n"
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


def read_single_file(path: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of an original-layout SD checkpoint whose key starts with ``prefix`` (only those are read).

    ``.safetensors`` is read key by key; ``.ckpt`` with ``torch.load(weights_only=True)`` (data only, no code).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    if path.suffix == ".ckpt":
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        while isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        return {k: v for k, v in sd.items() if k.startswith(prefix)}
    raise ValueError(f"{path}: a single-file SD checkpoint must end in {' or '.join(SINGLE_FILE_SUFFIXES)}")


def _from_single_file(cls, path: Path, prefix: str, convert: Callable, config: dict, dtype: str | None):
    """Build ``cls(**config)`` without allocating random weights, then fill it from the converted checkpoint."""
    ckpt = read_single_file(path, prefix)
    if not ckpt:
        raise ValueError(f"{path}: no tensor starts with {prefix!r}: not an original-layout Stable Diffusion "
                         f"checkpoint (keys model.diffusion_model.*, first_stage_model.*)")
    state = convert(ckpt, dict(config))
    with torch.device("meta"):
        model = cls.from_config(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: the {prefix}* tensors do not fit the {cls.__name__} config "
                         f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                         f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})")
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{cls.__name__} from {path}: {left[:3]} not filled by the checkpoint")
    if dtype:
        model = model.to(getattr(torch, dtype))
    return model.requires_grad_(False).eval()


def _load(cls, sd_dir: str | Path, subfolder: str, variant: str | None, dtype: str | None,
          config: dict | str | Path | None):
    path = Path(sd_dir)
    if isinstance(config, (str, Path)):
        config = json.loads(Path(config).read_text())
    if path.is_file():
        if path.suffix not in SINGLE_FILE_SUFFIXES:
            raise FileNotFoundError(missing_sd_message(sd_dir, f"a file, but not a {'/'.join(SINGLE_FILE_SUFFIXES)} "
                                                               "single-file checkpoint"))
        prefix, convert = ((LDM_UNET_KEY, convert_ldm_unet_checkpoint) if subfolder == "unet"
                           else (LDM_VAE_KEY, convert_ldm_vae_checkpoint))
        default = SD15_UNET_CONFIG if subfolder == "unet" else SD15_VAE_CONFIG
        model = _from_single_file(cls, path, prefix, convert, config or default, dtype)
        log.info("SD-1.5 %s read from the single original-layout file %s (converted by diffusers)", subfolder, path)
        return model
    check_sd_subfolder(sd_dir, subfolder)
    kwargs = {"torch_dtype": getattr(torch, dtype)} if dtype else {}
    model = cls.from_pretrained(str(sd_dir), subfolder=subfolder, local_files_only=True, variant=variant, **kwargs)
    log.info("SD-1.5 %s read from the diffusers folder %s", subfolder, path / subfolder)
    return model.requires_grad_(False).eval()


def load_unet(sd_dir: str | Path, variant: str | None = None, dtype: str | None = None,
              config: dict | str | Path | None = None) -> UNet2DConditionModel:
    """The SD-1.5 denoising U-Net (frozen; Diff-Restorer unfreezes it only if asked) from ``sd_dir/unet`` (a
    diffusers folder) or from ``sd_dir`` itself when it is a single original checkpoint file (then ``config``, a
    UNet2DConditionModel config dict or config.json path, defaults to SD-1.5's)."""
    return _load(UNet2DConditionModel, sd_dir, "unet", variant, dtype, config)


def load_vae(sd_dir: str | Path, variant: str | None = None, dtype: str | None = None,
             config: dict | str | Path | None = None) -> AutoencoderKL:
    """The SD-1.5 VAE (frozen) from ``sd_dir/vae`` or a single original checkpoint file (as :func:`load_unet`)."""
    return _load(AutoencoderKL, sd_dir, "vae", variant, dtype, config)


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


# ------------------------------------------------------------------ writing the original single-file layout
def _ldm_resnet(key: str) -> str:
    """Inverse of diffusers' ``update_unet_resnet_ldm_to_diffusers`` renames (a ResBlock's parameters)."""
    for new, old in (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                     ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"),
                     ("conv_shortcut", "skip_connection")):
        key = key.replace(f".{new}.", f".{old}.")
    return key


def unet_to_original_keys(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The U-Net's state dict under the original (LDM) key names, ``model.diffusion_model.*``: the inverse of
    diffusers' ``convert_ldm_unet_checkpoint`` (checked by a round trip in the tests); used to write the
    single-file layout users download (e.g. for :mod:`benchmarks.rehearse`)."""
    lpb = unet.config.layers_per_block
    fixed = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    has_attn = [bool(b.attentions) if hasattr(b, "attentions") else False for b in unet.up_blocks]
    out = {}
    for key, value in unet.state_dict().items():
        p = key.split(".")
        if key in fixed:
            new = fixed[key]
        elif p[0] == "down_blocks":
            b = int(p[1])
            if p[2] == "downsamplers":
                new = f"input_blocks.{(b + 1) * (lpb + 1)}.0.op." + ".".join(p[5:])
            else:
                i = 1 + b * (lpb + 1) + int(p[3])
                new = f"input_blocks.{i}.{0 if p[2] == 'resnets' else 1}." + ".".join(p[4:])
        elif p[0] == "mid_block":
            j = {"resnets": 2 * int(p[2]), "attentions": 1}[p[1]]
            new = f"middle_block.{j}." + ".".join(p[3:])
        elif p[0] == "up_blocks":
            b = int(p[1])
            if p[2] == "upsamplers":
                new = f"output_blocks.{b * (lpb + 1) + lpb}.{2 if has_attn[b] else 1}.conv." + ".".join(p[5:])
            else:
                i = b * (lpb + 1) + int(p[3])
                new = f"output_blocks.{i}.{0 if p[2] == 'resnets' else 1}." + ".".join(p[4:])
        else:
            raise KeyError(f"unet_to_original_keys: no original name for {key}")
        if ".resnets." in key:
            new = _ldm_resnet("." + new)[1:]
        out[LDM_UNET_KEY + new] = value
    return out


def vae_to_original_keys(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    """The VAE's state dict under the original key names, ``first_stage_model.*`` (inverse of diffusers'
    ``convert_ldm_vae_checkpoint``; attention projections back to 1×1 convolutions)."""
    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n_up = len(vae.config.up_block_types)
    attn = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out."))
    out = {}
    for key, value in vae.state_dict().items():
        p = key.split(".")
        if key in fixed:
            new = fixed[key]
        elif p[1] in ("down_blocks", "up_blocks"):
            side, i = ("down", int(p[2])) if p[1] == "down_blocks" else ("up", n_up - 1 - int(p[2]))
            if p[3] in ("downsamplers", "upsamplers"):
                new = f"{p[0]}.{side}.{i}.{'downsample' if side == 'down' else 'upsample'}." + ".".join(p[5:])
            else:
                new = f"{p[0]}.{side}.{i}.block.{p[4]}." + ".".join(p[5:])
        elif p[1] == "mid_block" and p[2] == "resnets":
            new = f"{p[0]}.mid.block_{int(p[3]) + 1}." + ".".join(p[4:])
        elif p[1] == "mid_block" and p[2] == "attentions":
            rest = ".".join(p[4:])
            for d, o in attn:
                rest = rest.replace(d, o) if rest.startswith(d) else rest
            new = f"{p[0]}.mid.attn_1.{rest}"
            if value.ndim == 2:
                value = value[:, :, None, None]
        else:
            raise KeyError(f"vae_to_original_keys: no original name for {key}")
        out[LDM_VAE_KEY + new.replace("conv_shortcut", "nin_shortcut")] = value
    return out


def save_single_file(path: str | Path, unet: UNet2DConditionModel, vae: AutoencoderKL,
                     extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``unet`` and ``vae`` as one original-layout ``.safetensors`` file (as ``v1-5-pruned-emaonly``)."""
    from safetensors.torch import save_file

    tensors = {**unet_to_original_keys(unet), **vae_to_original_keys(vae), **(extra or {})}
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path))
    return Path(path)
