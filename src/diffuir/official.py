"""Import checkpoints of the official DiffUIR code (github.com/iSEE-Laboratory/DiffUIR, e.g. ``model-300.pt``).

The released file is a dict {'step', 'model', 'opt0', 'ema', 'scaler'}; 'model' and 'ema' hold the state of
its ``ResidualDiffusion`` (network under ``model.unet0.``; EMA copy under ``ema_model.model.unet0.``). The
official test script evaluates the EMA weights, so they are the default here.

The file is read weights-only (:func:`src.utils.checkpoints.read_checkpoint`: tensors, numbers, strings, dicts;
a file that would unpickle anything else is refused and nothing in it runs). This module also describes DiffUIR
state dicts (size, width, multipliers) for the suite's checkpoint errors.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from src.diffuir.unet import SIZES, DiffUIRUNet
from src.utils.checkpoints import CheckpointMismatchError, mismatch_message, read_checkpoint, register_state_describer

_BLOCK = {"mlp.1": "time_proj", "block1.proj": "block1.conv", "block2.proj": "block2.conv",
          "block1.norm": "block1.norm", "block2.norm": "block2.norm", "res_conv": "shortcut"}

# (official pattern, suite replacement), tried in order on the network-relative key.
_RULES: list[tuple[str, str]] = [
    (r"^init_conv\.", "stem."),
    (r"^time_mlp\.", "time_embed."),
    (r"^final_conv\.", "head."),
    (r"^final_res_block\.", "final_res."),
    (r"^mid_block([12])\.", r"mid_res\1."),
    (r"^mid_attn\.fn\.norm\.g$", "mid_attn.norm.gain"),
    (r"^mid_attn\.fn\.fn\.", "mid_attn.fn."),
    (r"^(downs|ups)\.(\d+)\.0\.", r"\1.\2.res1."),
    (r"^(downs|ups)\.(\d+)\.1\.", r"\1.\2.res2."),
    (r"^(downs|ups)\.(\d+)\.2\.fn\.norm\.g$", r"\1.\2.attn.norm.gain"),
    (r"^(downs|ups)\.(\d+)\.2\.fn\.fn\.to_qkv\.", r"\1.\2.attn.fn.to_qkv."),
    (r"^(downs|ups)\.(\d+)\.2\.fn\.fn\.to_out\.0\.", r"\1.\2.attn.fn.to_out."),
    (r"^(downs|ups)\.(\d+)\.2\.fn\.fn\.to_out\.1\.g$", r"\1.\2.attn.fn.out_norm.gain"),
    (r"^ups\.(\d+)\.3\.1\.", r"ups.\1.resample.conv."),
    (r"^(downs|ups)\.(\d+)\.3\.", r"\1.\2.resample."),
]


def _rename(key: str) -> str:
    for pattern, repl in _RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            key = new
            break
    else:
        raise KeyError(f"unexpected key in official DiffUIR state dict: {key!r}")
    for old, new in _BLOCK.items():  # resnet-block internals keep their place after the level rename
        key = key.replace(f".{old}.", f".{new}.")
    return key


def network_state_dict(checkpoint: dict, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The official network's weights (keys relative to its ``Unet``) from a released checkpoint dict."""
    for source, prefix in (("ema", "ema_model.model.unet0."), ("model", "model.unet0."), (None, "model.unet0."),
                           (None, "")):
        if source == "ema" and not use_ema:
            continue
        sd = checkpoint.get(source) if source else checkpoint
        if not isinstance(sd, dict):
            continue
        found = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and torch.is_tensor(v)}
        if "init_conv.weight" in found:
            return found
    raise KeyError("no official DiffUIR network found: expected 'ema_model.model.unet0.*' under 'ema' or "
                   "'model.unet0.*' under 'model' (the layout of the released model-300.pt)")


def convert_state_dict(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official ``Unet`` state dict to :class:`DiffUIRUNet`'s names (values untouched)."""
    return {_rename(k): v for k, v in official.items()}


def infer_unet_config(official: dict[str, torch.Tensor]) -> dict:
    """dim, dim_mults and in_channels of an official network, read from its weight shapes."""
    dim = official["init_conv.weight"].shape[0]
    levels = sorted({int(m.group(1)) for k in official if (m := re.match(r"downs\.(\d+)\.", k))})
    mults = tuple(official[f"downs.{i}.3.weight"].shape[0] // dim for i in levels)
    return {"dim": dim, "dim_mults": mults, "in_channels": official["init_conv.weight"].shape[1]}


def load_official_unet(path: str | Path, use_ema: bool = True) -> DiffUIRUNet:
    """Build a :class:`DiffUIRUNet` holding the weights of an official checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"official DiffUIR checkpoint not found at {path}: download model-300.pt from the links in "
            "github.com/iSEE-Laboratory/DiffUIR (README, 'Pre-trained models') and pass its local path"
        )
    checkpoint = read_checkpoint(path, map_location="cpu", what="official DiffUIR checkpoint")
    try:
        official = network_state_dict(checkpoint, use_ema)
    except KeyError as e:
        raise KeyError(f"{path}: {e.args[0]}") from None
    unet = DiffUIRUNet(**infer_unet_config(official))
    unet.load_state_dict(convert_state_dict(official), strict=True)
    return unet


def load_official_weights(net: DiffUIRUNet, path: str | Path, use_ema: bool = True) -> DiffUIRUNet:
    """Load an official checkpoint into ``net`` (``model.init_from_official``), refusing a file of another size
    with one sentence (e.g. "it holds DiffUIR with dim 32, dim_mults [1, 1, 1, 1] (DiffUIR-T); the config asks
    for DiffUIR with dim 64, dim_mults [1, 2, 4, 8] (DiffUIR-L)")."""
    state = load_official_unet(path, use_ema).state_dict()
    message = mismatch_message(net.state_dict(), state, f"official DiffUIR checkpoint {path}")
    if message:
        raise CheckpointMismatchError(message)
    net.load_state_dict(state)
    return net


def size_name(dim: int, dim_mults) -> str | None:
    """"T" / "S" / "B" / "L" for a released DiffUIR size (§4.2), else None."""
    for name, spec in SIZES.items():
        if spec["dim"] == dim and tuple(spec["dim_mults"]) == tuple(dim_mults):
            return name
    return None


def suite_unet_config(state: dict) -> dict | None:
    """dim, dim_mults, in_channels of the :class:`DiffUIRUNet` in a suite state dict (bare, or under ``net.``,
    ``ema.averaged.``), read from its weight shapes; None if it holds none."""
    prefixes = [k[: -len("stem.weight")] for k in state if k.endswith("stem.weight")]
    if not prefixes:
        return None
    prefix = "net." if "net." in prefixes else min(prefixes, key=len)
    stem = state[prefix + "stem.weight"]
    if not torch.is_tensor(stem) or stem.dim() != 4:
        return None
    dim = stem.shape[0]
    levels = sorted({int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"downs\.(\d+)\.", k))})
    try:
        mults = tuple(state[f"{prefix}downs.{i}.resample.weight"].shape[0] // dim for i in levels)
    except KeyError:
        return None
    return {"dim": int(dim), "dim_mults": mults, "in_channels": int(stem.shape[1])}


@register_state_describer
def describe_diffuir_state(state: dict) -> str | None:
    """"DiffUIR with dim 32, dim_mults [1, 1, 1, 1] (DiffUIR-T)" for a DiffUIR state dict, else None."""
    cfg = suite_unet_config(state)
    if cfg is None:
        return None
    name = size_name(cfg["dim"], cfg["dim_mults"])
    return (f"DiffUIR with dim {cfg['dim']}, dim_mults {list(cfg['dim_mults'])}"
            + (f" (DiffUIR-{name})" if name else "") + ("" if cfg["in_channels"] == 6 else
                                                          f", {cfg['in_channels']} input channels"))
