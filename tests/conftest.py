"""Shared test set-up: offline hub, one torch thread (2 shared cores), Hydra config composition."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# no test run shares cached exports or checks (tests/diffuir/test_engine_cache.py points it at a temporary folder)
os.environ["UIR_CACHE_DIR"] = "off"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose_train(overrides: list[str], output_dir: Path | None = None, hydra_config: bool = False):
    """Compose conf/train.yaml as `python -m src.train` would (hydra's output dir replaced by a path)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        extra = [f"paths.output_dir={output_dir}"] if output_dir else ["paths.output_dir=unused"]
        return compose(config_name="train", overrides=[*overrides, *extra], return_hydra_config=hydra_config)


@pytest.fixture
def compose_cfg():
    return compose_train
