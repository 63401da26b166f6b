"""Degradation-aware Refinement Block (DRB, paper §III-D, Eq. 5, Fig. 6).

    z̃_i = Conv(Concat(z_i, z_i^lq)),   f_i = Sigmoid(Linear(P_D)),   ẑ_i = ResBlock(z̃_i ⊗ f_i) + z_i

z_i: features of the SD VAE decoder at one scale; z_i^lq: the VAE encoder's features of the LQ image at the same
resolution; P_D: the degradation embedding of the Visual Prompt Processor.

Initialisation (the paper is silent; ours): the fusion convolution starts as the identity on the z_i channels and
zero on the z^lq channels (z̃_i = z_i), and the last convolution of the residual block starts at zero, so at
initialisation ẑ_i = z_i exactly and the Degradation-aware Decoder is the pretrained SD decoder, output for output.
Fine-tuning therefore starts from the SD decoder's reconstructions instead of from the noise a random branch would
add to them, and every new path (the LQ features, the modulation) is learned as a correction. Gradients reach all
of it from the first steps: the zero convolution gets a gradient at once (its input is non-zero), the rest as soon
as it moves off zero (ControlNet's zero-convolution argument).

"ResBlock" here is the residual branch GroupNorm → SiLU → Conv3×3 → GroupNorm → SiLU → Conv3×3 (the pre-activation
layout of the SD decoder's own ResNet blocks), and Eq. 5's "+ z_i" is its shortcut. We read the equation this way
because a block with a second, inner shortcut (ResBlock(x) = x + F(x)) would give ẑ_i = z̃_i⊗f_i + F(·) + z_i,
which cannot equal z_i at initialisation while z̃_i = z_i.
"""

from __future__ import annotations

import torch
from torch import nn


def _groups(channels: int, preferred: int) -> int:
    """The largest group count ≤ ``preferred`` dividing ``channels`` (32 for SD's 128…512 widths)."""
    g = min(preferred, channels)
    while channels % g:
        g -= 1
    return g


class RefinementResBlock(nn.Module):
    """The residual branch F of Eq. 5: GN → SiLU → Conv → GN → SiLU → Conv (last conv zero-initialised)."""

    def __init__(self, channels: int, norm_num_groups: int = 32, eps: float = 1e-6):
        super().__init__()
        groups = _groups(channels, norm_num_groups)
        self.norm1 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.SiLU()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.norm2(self.conv1(self.act(self.norm1(x))))))


class DegradationAwareRefinementBlock(nn.Module):
    """One DRB (Eq. 5): ``forward(z, z_lq, p_d) -> ẑ``, shapes B×C×H×W, B×C_lq×H×W, B×D → B×C×H×W.

    Args:
        channels: C, the decoder's width at this scale.
        lq_channels: C_lq, the encoder's width at this scale.
        degradation_dim: D, the width of P_D.
        kernel_size: of the fusion convolution (the paper says "Conv"; 3 by default, identity = centre tap).
        modulation: False drops f_i (z̃_i is used unmodulated): not a paper row, kept for experiments.
        norm_num_groups: GroupNorm groups of the residual branch (the SD decoder's 32 by default).
    """

    def __init__(self, channels: int, lq_channels: int, degradation_dim: int, kernel_size: int = 3,
                 modulation: bool = True, norm_num_groups: int = 32):
        super().__init__()
        self.channels, self.lq_channels = channels, lq_channels
        self.fuse = nn.Conv2d(channels + lq_channels, channels, kernel_size, padding=kernel_size // 2)
        self.linear = nn.Linear(degradation_dim, channels) if modulation else None
        self.block = RefinementResBlock(channels, norm_num_groups)
        self.reset_fusion()

    @torch.no_grad()
    def reset_fusion(self) -> None:
        """Fusion conv = identity on the z channels, zero on the z_lq channels: z̃ = z."""
        self.fuse.weight.zero_()
        self.fuse.bias.zero_()
        k = self.fuse.kernel_size[0] // 2
        idx = torch.arange(self.channels)
        self.fuse.weight[idx, idx, k, k] = 1.0

    def modulation_vector(self, p_d: torch.Tensor) -> torch.Tensor:
        """f = sigmoid(Linear(P_D)), B×C."""
        return torch.sigmoid(self.linear(p_d))

    def forward(self, z: torch.Tensor, z_lq: torch.Tensor, p_d: torch.Tensor | None) -> torch.Tensor:
        if z.shape[-2:] != z_lq.shape[-2:]:
            raise ValueError(f"DRB: decoder features {tuple(z.shape)} and LQ features {tuple(z_lq.shape)} differ "
                             "in size")
        z_fused = self.fuse(torch.cat([z, z_lq.to(z.dtype)], dim=1))
        if self.linear is not None:
            z_fused = z_fused * self.modulation_vector(p_d.to(z.dtype))[:, :, None, None]
        return z + self.block(z_fused)  # z first: the sum keeps z's memory layout (bit-exact identity at init)
