"""Convolutional building blocks of the DiffUIR U-Net (the denoising-diffusion U-Net family DiffUIR builds on)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class WeightStandardizedConv2d(nn.Conv2d):
    """Conv2d whose kernel is standardised per output channel before use (Qiao et al., 2019).

    w' = (w - mean(w)) / sqrt(var(w) + eps), eps = 1e-5 in float32 and 1e-3 otherwise.
    At inference the standardised kernel is a constant: it is computed once and cached until the
    weight changes (tracked through the parameter's version counter), which removes the per-call cost.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        eps = 1e-5 if w.dtype == torch.float32 else 1e-3
        var, mean = torch.var_mean(w, dim=(1, 2, 3), unbiased=False, keepdim=True)
        return (w - mean) * (var + eps).rsqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            weight = self.standardized_weight()
        else:
            key = (self.weight._version, self.weight.data_ptr(), self.weight.dtype, self.weight.device)
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, self.standardized_weight())
            weight = self._cache[1]
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor, with a gain and no bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * (var + eps).rsqrt() * self.gain


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer sinusoidal embedding of a scalar per sample: [sin(x·f_i), cos(x·f_i)], f_i = 1e4^(-i/(d/2-1))."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None, :]
        return torch.cat((args.sin(), args.cos()), dim=-1)


class ConvNormAct(nn.Module):
    """Weight-standardised 3×3 conv → GroupNorm → optional time FiLM (x·(scale+1)+shift) → SiLU."""

    def __init__(self, dim_in: int, dim_out: int, groups: int = 8):
        super().__init__()
        self.conv = WeightStandardizedConv2d(dim_in, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)

    def forward(self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None):
        x = self.norm(self.conv(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = torch.addcmul(shift, x, scale + 1)
        return F.silu(x)


class ResBlock(nn.Module):
    """Residual block: two ConvNormAct, the first modulated by the time embedding; 1×1 shortcut if widths differ."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int, groups: int = 8):
        super().__init__()
        self.time_proj = nn.Linear(time_dim, dim_out * 2)
        self.block1 = ConvNormAct(dim_in, dim_out, groups)
        self.block2 = ConvNormAct(dim_out, dim_out, groups)
        self.shortcut = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        scale_shift = self.time_proj(F.silu(time_emb))[:, :, None, None].chunk(2, dim=1)
        h = self.block2(self.block1(x, scale_shift))
        return h + self.shortcut(x)


def downsample(dim_in: int, dim_out: int) -> nn.Module:
    """Strided 4×4 convolution halving the resolution."""
    return nn.Conv2d(dim_in, dim_out, 4, stride=2, padding=1)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 upsampling followed by a 3×3 convolution."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
