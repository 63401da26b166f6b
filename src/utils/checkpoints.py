"""Rebuilding a trained model from a suite checkpoint alone (the model config travels inside the file)."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate


def load_model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"):
    """The LightningModule saved in ``path`` (a ``.ckpt`` written by ``src.train``), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (train one with `python -m src.train ...`; "
                                "checkpoints are written to <run dir>/checkpoints/last.ckpt)")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    config = ckpt.get("uir_model_config")
    if config is None:
        raise KeyError(f"{path} has no 'uir_model_config': it was not written by this suite's src.train")
    return build_from_config(config, ckpt["state_dict"])


def build_from_config(config: dict, state_dict: dict):
    """Instantiate a model from its stored Hydra config, load its weights, and return it in eval mode."""
    model = instantiate(config)
    model.load_state_dict(state_dict)
    model.model_config = config
    return model.eval()
