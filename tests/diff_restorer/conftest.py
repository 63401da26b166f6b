"""Tiny Diff-Restorer stage-1 models built from conf/model/diff_restorer_stage1_tiny.yaml (random, seeded)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import compose_train

TINY = ["experiment=diff_restorer_stage1_tiny"]


def tiny_config(overrides: list[str] | None = None):
    return compose_train([*TINY, *(overrides or [])])


def build_tiny(overrides: list[str] | None = None):
    cfg = tiny_config(overrides)
    model = instantiate(cfg.model)
    model.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    return model


def batch(b: int = 2, size: int = 32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"lq": torch.rand(b, 3, size, size, generator=g), "gt": torch.rand(b, 3, size, size, generator=g),
            "task": torch.arange(b) % 8}


@pytest.fixture(scope="module")
def tiny_model():
    """One shared tiny model per test module: do not train it (build your own with build_tiny)."""
    return build_tiny().eval()
