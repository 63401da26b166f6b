"""L_per of the Degradation-aware Decoder (paper Eq. 8): distances between VGG-19 features.

The paper says only "calculated on the VGG-19 backbone". Our defaults are the common SR recipe (ESRGAN /
Real-ESRGAN's perceptual loss): ImageNet-normalised inputs, features of conv1_2, conv2_2, conv3_4, conv4_4 and
conv5_4 *before* their ReLU, weights 0.1, 0.1, 1, 1, 1, L1 distance. The network is torchvision's VGG-19
(configuration "E", no batch norm), cut after the deepest layer used.

Weights come only from a local file: torchvision's ImageNet checkpoint ``vgg19-dcbaabe7.pth``
(https://download.pytorch.org/models/vgg19-dcbaabe7.pth) or any state dict with the same ``features.*`` keys.
``weights=None`` builds a random-initialised VGG-19 (seeded; torchvision's initialisation) for tests and the
tiny configs: the loss then still trains, but is not a perceptual loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from src.diff_restorer.sd_loading import seeded

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbaabe7.pth"
VGG19_FILE = "vgg/vgg19-dcbaabe7.pth"  # under paths.weights_dir
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


def vgg19_layer_names() -> list[str]:
    """Names of the modules of torchvision's ``vgg19().features``: conv1_1, relu1_1, …, pool5."""
    names, block, idx = [], 1, 1
    for v in cfgs["E"]:
        if v == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


def missing_vgg_message(path: str | Path) -> str:
    return (f"VGG-19 weights file not found: {path}.\nThe perceptual loss L_per of the Degradation-aware Decoder needs "
            f"torchvision's ImageNet VGG-19, e.g.\n  mkdir -p <weights_dir>/vgg && curl -L -o "
            f"<weights_dir>/{VGG19_FILE} {VGG19_URL}\n(<weights_dir> is paths.weights_dir: $UIR_WEIGHTS, default "
            f"./weights; the config expects ${{paths.weights_dir}}/{VGG19_FILE}), or point "
            "model.perceptual.weights at your copy. experiment=diff_restorer_stage2_tiny needs no file (random VGG).")


class VGGPerceptualLoss(nn.Module):
    """``forward(pred, target)`` for B×3×H×W images in [0, 1] → Σ_l w_l · mean |φ_l(pred) − φ_l(target)|.

    Args:
        weights: local VGG-19 state dict file (torchvision format), or None for random weights (tests).
        layer_weights: {layer name: weight}, names from :func:`vgg19_layer_names` (conv*_*: before the ReLU).
        criterion: ``l1`` or ``l2`` (mean squared) distance of the features.
        normalize_input: ImageNet mean/std normalisation (what the pretrained VGG expects).
        seed: of the random initialisation when ``weights`` is None.
    """

    def __init__(self, weights: str | Path | None = None, layer_weights: dict[str, float] | None = None,
                 criterion: str = "l1", normalize_input: bool = True, seed: int | None = 0):
        super().__init__()
        self.layer_weights = dict(layer_weights or DEFAULT_LAYER_WEIGHTS)
        names = vgg19_layer_names()
        unknown = sorted(set(self.layer_weights) - set(names))
        if unknown:
            raise ValueError(f"unknown VGG-19 layers {unknown}; known: {names}")
        if criterion not in ("l1", "l2"):
            raise ValueError(f"criterion must be l1 or l2, not {criterion!r}")
        self.criterion, self.normalize_input = criterion, normalize_input
        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(missing_vgg_message(weights))
        features = seeded(seed, lambda: self._init(make_layers(cfgs["E"], batch_norm=False)))
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            features.load_state_dict(state)
        last = max(names.index(n) for n in self.layer_weights)
        self.features = features[: last + 1]
        self.names = names[: last + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    @staticmethod
    def _init(features: nn.Sequential) -> nn.Sequential:
        for m in features.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        return features

    def train(self, mode: bool = True):  # always frozen
        return super().train(False)

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.normalize_input:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for name, layer in zip(self.names, self.features):
            # the ReLUs of torchvision's VGG are in-place: clone what is kept before the next one overwrites it
            x = layer(x)
            if name in self.layer_weights:
                out[name] = x.clone() if name.startswith("conv") else x
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.extract(pred)
        with torch.no_grad():
            ft = self.extract(target)
        dist = F.l1_loss if self.criterion == "l1" else F.mse_loss
        return sum(w * dist(fp[n], ft[n]) for n, w in self.layer_weights.items())
