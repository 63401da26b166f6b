"""Degradation-aware Control Encoder (paper §III-C): the LQ image to latent-resolution control features."""

from __future__ import annotations

import torch
from torch import nn

from src.diff_restorer.degradation_modulation import DegradationModulation, ResBlock


class ControlEncoder(nn.Module):
    """Four residual blocks, each followed by a DMB (Eq. 3), with stride-2 convolutions between them.

    Stage i at 1/2^i of the input size: ``F̃ = ResBlock(F)``, ``F̂ = DMB(F̃, P_D)``; three stride-2 3×3
    convolutions bring the LQ image (H×W) to the SD latent grid (H/8 × W/8) with ``channels[-1]`` features,
    which the control network takes in place of ControlNet's hint encoder. The image enters on the [-1, 1]
    scale the VAE uses.

    Args:
        degradation_dim: width of P_D.
        channels: widths of the four stages (the paper gives none; ControlNet's hint encoder uses 16…256).
        modulation: False for the "w/o DMB" ablation (see :class:`DegradationModulation`).
    """

    def __init__(self, degradation_dim: int = 256, channels=(64, 128, 256, 256), modulation: bool = True,
                 in_channels: int = 3):
        super().__init__()
        channels = list(channels)
        self.out_channels, self.downsample_factor = channels[-1], 2 ** (len(channels) - 1)
        self.modulation = modulation
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        self.dmbs = nn.ModuleList()
        self.downs = nn.ModuleList()
        prev = channels[0]
        for i, c in enumerate(channels):
            self.blocks.append(ResBlock(prev, c))
            self.dmbs.append(DegradationModulation(c, degradation_dim, modulation))
            if i < len(channels) - 1:
                self.downs.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            prev = c

    def forward(self, lq: torch.Tensor, p_d: torch.Tensor | None) -> torch.Tensor:
        """``lq`` B×3×H×W in [0, 1] (H, W multiples of 8), ``p_d`` B×degradation_dim → B×C×H/8×W/8."""
        h, w = lq.shape[-2:]
        if h % self.downsample_factor or w % self.downsample_factor:
            raise ValueError(f"ControlEncoder input {h}×{w} is not a multiple of {self.downsample_factor}")
        x = self.conv_in(lq * 2 - 1)
        for i, (block, dmb) in enumerate(zip(self.blocks, self.dmbs)):
            x = dmb(block(x), p_d)
            if i < len(self.downs):
                x = self.downs[i](x)
        return x
