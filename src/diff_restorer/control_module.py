"""Image Control Network (paper §III-C, Fig. 4): a ControlNet-style trainable copy of the SD U-Net encoder.

Built with diffusers' ``ControlNetModel.from_unet`` (a copy of the U-Net's conv_in, time embedding, down blocks
and mid block, with ControlNet's zero-initialised 1×1 output convolutions), except that ControlNet's own hint
encoder (a small CNN taking the RGB hint to the latent grid) is replaced by a single zero-initialised 3×3
convolution from the Degradation-aware Control Encoder's latent-resolution features to the U-Net's first width:
the Control Encoder *is* the hint encoder here. Its outputs enter the frozen U-Net as
``down_block_additional_residuals`` / ``mid_block_additional_residual``; at initialisation they are exactly zero,
so the U-Net's prediction is unchanged.
"""

from __future__ import annotations

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from torch import nn


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class LatentControlInput(nn.Module):
    """Zero-initialised 3×3 conv: control features (C_ctrl at latent resolution) → U-Net width."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = zero_module(nn.Conv2d(in_channels, out_channels, 3, padding=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features)


class ImageControlNetwork(nn.Module):
    """``forward(z_t, t, context, control_features) -> (down residuals, mid residual)`` for the SD U-Net."""

    def __init__(self, controlnet: ControlNetModel):
        super().__init__()
        self.controlnet = controlnet

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, control_channels: int,
                  load_weights_from_unet: bool = True) -> ImageControlNetwork:
        """Copy ``unet``'s encoder (weights too, as ControlNet does) and fit the input to the control features."""
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16,),
                                               load_weights_from_unet=load_weights_from_unet)
        controlnet.controlnet_cond_embedding = LatentControlInput(control_channels, unet.config.block_out_channels[0])
        return cls(controlnet.requires_grad_(True).train())

    def zero_convolutions(self) -> list[nn.Module]:
        """The zero-initialised convolutions through which control reaches the U-Net (and its input)."""
        c = self.controlnet
        return [c.controlnet_cond_embedding.conv, *c.controlnet_down_blocks, c.controlnet_mid_block]

    def enable_gradient_checkpointing(self) -> None:
        self.controlnet.enable_gradient_checkpointing()

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                control_features: torch.Tensor, conditioning_scale: float = 1.0):
        out = self.controlnet(sample, timestep, encoder_hidden_states=context, controlnet_cond=control_features,
                              conditioning_scale=conditioning_scale, return_dict=False)
        return list(out[0]), out[1]
