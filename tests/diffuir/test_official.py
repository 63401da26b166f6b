"""The official-checkpoint converter, checked against the official network's state-dict layout.

``data/official_unet_shapes.json`` lists every key and shape of the official ``Unet`` for T/S/B/L, read from
instantiating the official code (github.com/iSEE-Laboratory/DiffUIR @ c71437c). Outputs of the two codes agreed
to 2.5e-6 (one forward) and 1.7e-6 (3-step sampling, [0, 1] scale) on identical weights, input and noise.
"""

import json
from pathlib import Path

import pytest
import torch

from src.diffuir.official import convert_state_dict, infer_unet_config, load_official_unet, network_state_dict
from src.diffuir.unet import SIZES, DiffUIRUNet

SHAPES = json.loads((Path(__file__).parent / "data" / "official_unet_shapes.json").read_text())


def _fake_official(size: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) for k, shape in SHAPES[size].items()}


@pytest.mark.parametrize("size", list(SIZES))
def test_every_official_key_maps_onto_the_suite_model(size):
    official = _fake_official(size)
    assert infer_unet_config(official) == {**SIZES[size], "in_channels": 6}
    converted = convert_state_dict(official)
    ours = DiffUIRUNet.from_size(size).state_dict()
    assert set(converted) == set(ours)
    assert all(converted[k].shape == ours[k].shape for k in ours)


def test_checkpoint_layouts_and_ema_preference(tmp_path):
    model = {"model.unet0." + k: v for k, v in _fake_official("T", 1).items()}
    ema = {"ema_model.model.unet0." + k: v for k, v in _fake_official("T", 2).items()}
    path = tmp_path / "model-300.pt"
    torch.save({"step": 300000, "model": {**model, "model.alphas_cumsum": torch.zeros(1000)},
                "ema": {"initted": torch.ones(1), "step": torch.tensor(3), **ema}}, path)
    net = load_official_unet(path)
    torch.testing.assert_close(net.stem.weight, ema["ema_model.model.unet0.init_conv.weight"])
    net = load_official_unet(path, use_ema=False)
    torch.testing.assert_close(net.head.weight, model["model.unet0.final_conv.weight"])
    torch.testing.assert_close(net.downs[1].attn.fn.out_norm.gain, model["model.unet0.downs.1.2.fn.fn.to_out.1.g"])


def test_missing_or_foreign_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model-300.pt"):
        load_official_unet(tmp_path / "nope.pt")
    with pytest.raises(KeyError, match="no official DiffUIR network"):
        network_state_dict({"state_dict": {"a": torch.zeros(1)}})
    with pytest.raises(KeyError, match="unexpected key"):
        convert_state_dict({"init_conv.weight": torch.zeros(1), "extra.thing": torch.zeros(1)})
