"""Residual block and Degradation Modulation Block (DMB, paper Fig. 5 and Eq. 3)."""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """``x ↦ skip(x) + conv(SiLU(conv(x)))`` with 3×3 convolutions (skip: 1×1 conv when the width changes).

    The paper does not detail its residual blocks; this is the plain restoration-style block (no normalisation,
    so absolute intensity and colour — which low-light and haze change — survive).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or in_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.act = nn.SiLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv2(self.act(self.conv1(x)))


class DegradationModulation(nn.Module):
    """DMB: ``F̂ = ResBlock(F̃ ⊗ f)`` with ``f = sigmoid(Linear(P_D))`` one weight per channel (Eq. 3).

    ``modulation=False`` (the "w/o DMB" ablation) drops the degradation input: ``F̂ = ResBlock(F̃)``; the residual
    block stays, so the ablation removes the degradation-aware selection and nothing else.
    """

    def __init__(self, channels: int, degradation_dim: int, modulation: bool = True):
        super().__init__()
        self.channels, self.modulation = channels, modulation
        self.linear = nn.Linear(degradation_dim, channels) if modulation else None
        self.block = ResBlock(channels)

    def modulation_vector(self, p_d: torch.Tensor) -> torch.Tensor:
        """f = sigmoid(Linear(P_D)), B×C."""
        return torch.sigmoid(self.linear(p_d))

    def forward(self, x: torch.Tensor, p_d: torch.Tensor | None) -> torch.Tensor:
        if self.linear is not None:
            x = x * self.modulation_vector(p_d.to(x.dtype))[:, :, None, None]
        return self.block(x)
