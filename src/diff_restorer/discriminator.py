"""Patch discriminator for L_adv of the Degradation-aware Decoder (paper §III-E, Eq. 8).

The paper names no discriminator; it follows [51] (which trains its decoder like the LDM/taming autoencoders, with
a PatchGAN). This is the standard PatchGAN of pix2pix (Isola et al., CVPR 2017; "NLayerDiscriminator"), written
here from that design: a 4×4 stride-2 convolution with LeakyReLU(0.2) and no normalisation, ``n_layers − 1`` more
4×4 stride-2 convolutions doubling the width (capped at 8× the base) with normalisation and LeakyReLU, one 4×4
stride-1 convolution, and a 4×4 stride-1 convolution to one logit per patch (70×70 receptive field with
``n_layers = 3``). Weights are initialised N(0, 0.02) (norm scales N(1, 0.02)), as in pix2pix / DCGAN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(32, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} (batch, instance, group or none)")


class NLayerDiscriminator(nn.Module):
    """PatchGAN: B×C×H×W images in [−1, 1] → B×1×h×w real/fake logits, one per (overlapping) patch."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        use_bias = norm in ("none", "instance")  # a following BatchNorm/GroupNorm makes a bias redundant
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(base_channels * prev, base_channels * mult, 4, stride=stride, padding=1,
                                 bias=use_bias),
                       _norm(norm, base_channels * mult), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(base_channels * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """D's loss: hinge (LDM/taming, what [51] uses) or vanilla (pix2pix's binary cross-entropy)."""
    if kind == "hinge":
        return 0.5 * (F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean())
    if kind == "vanilla":
        return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())
    raise ValueError(f"unknown adversarial loss {kind!r} (hinge or vanilla)")


def generator_adversarial_loss(logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """G's L_adv: −E[D(fake)] for hinge (LDM/taming), non-saturating −log σ(D(fake)) for vanilla."""
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "vanilla":
        return F.softplus(-logits_fake).mean()
    raise ValueError(f"unknown adversarial loss {kind!r} (hinge or vanilla)")
