"""Control Decoder (CD, paper §III-C, Eq. 4): reconstructs the image from the control features, for L_rec only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.diff_restorer.degradation_modulation import ResBlock


class ControlDecoder(nn.Module):
    """Four residual blocks with ×2 (nearest + 3×3 conv) up-sampling between them, then a 3×3 conv to RGB.

    Input: the Control Encoder's latent-resolution features; output I_CD at the image size, compared with
    I_GT on the [0, 1] scale (:meth:`loss`, L_rec = ‖I_CD − I_GT‖², mean over pixels). Not used at inference.
    """

    def __init__(self, in_channels: int = 256, channels=(256, 256, 128, 64), out_channels: int = 3):
        super().__init__()
        channels = list(channels)
        self.upsample_factor = 2 ** (len(channels) - 1)
        self.blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        prev = in_channels
        for i, c in enumerate(channels):
            self.blocks.append(ResBlock(prev, c))
            if i < len(channels) - 1:
                self.ups.append(nn.Conv2d(c, c, 3, padding=1))
            prev = c
        self.conv_out = nn.Conv2d(prev, out_channels, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.ups):
                x = self.ups[i](F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.conv_out(x)

    @staticmethod
    def loss(reconstruction: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """L_rec (Eq. 4) as a mean squared error."""
        return F.mse_loss(reconstruction.float(), gt.float())
