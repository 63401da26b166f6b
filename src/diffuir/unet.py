"""The DiffUIR U-Net (paper §4.2): sizes T/S/B/L differ only in the base width C and the channel multipliers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.diffuir.attention import Attention, LinearAttention, PreNormResidual
from src.diffuir.blocks import ResBlock, SinusoidalTimeEmbedding, Upsample, downsample

# DiffUIR §4.2: C and channel multipliers of each released size (parameters 0.89M / 3.27M / 12.41M / 36.26M).
SIZES: dict[str, dict] = {
    "T": {"dim": 32, "dim_mults": (1, 1, 1, 1)},
    "S": {"dim": 32, "dim_mults": (1, 2, 2, 4)},
    "B": {"dim": 64, "dim_mults": (1, 2, 2, 4)},
    "L": {"dim": 64, "dim_mults": (1, 2, 4, 8)},
}


class DownLevel(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_dim: int, groups: int, is_last: bool):
        super().__init__()
        self.res1 = ResBlock(dim_in, dim_in, time_dim, groups)
        self.res2 = ResBlock(dim_in, dim_in, time_dim, groups)
        self.attn = PreNormResidual(dim_in, LinearAttention(dim_in))
        self.resample = nn.Conv2d(dim_in, dim_out, 3, padding=1) if is_last else downsample(dim_in, dim_out)


class UpLevel(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_dim: int, groups: int, is_last: bool):
        super().__init__()
        self.res1 = ResBlock(dim_out + dim_in, dim_out, time_dim, groups)
        self.res2 = ResBlock(dim_out + dim_in, dim_out, time_dim, groups)
        self.attn = PreNormResidual(dim_out, LinearAttention(dim_out))
        self.resample = nn.Conv2d(dim_out, dim_in, 3, padding=1) if is_last else Upsample(dim_out, dim_in)


class DiffUIRUNet(nn.Module):
    """Residual-predicting U-Net: input x_t (⊕ I_in for the implicit condition), output the residual I_res.

    ``in_channels`` is 6 when the degraded image is concatenated (implicit condition, IC) and 3 without it.
    The time input is the scalar the diffusion feeds (ᾱ_t·1000 in the released code), embedded sinusoidally.
    Inputs of any size are reflect-padded right/bottom to a multiple of ``2**len(dim_mults)`` and cropped back.
    """

    def __init__(
        self,
        dim: int = 64,
        dim_mults: tuple[int, ...] = (1, 2, 4, 8),
        in_channels: int = 6,
        out_channels: int = 3,
        groups: int = 8,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.dim, self.dim_mults = dim, tuple(dim_mults)  # the size (SIZES), as the paper names it
        self.pad_multiple = 2 ** len(dim_mults)
        dims = [dim, *(dim * m for m in dim_mults)]
        pairs = list(zip(dims[:-1], dims[1:]))
        time_dim = dim * 4

        self.stem = nn.Conv2d(in_channels, dim, 7, padding=3)
        self.time_embed = nn.Sequential(
            SinusoidalTimeEmbedding(dim), nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )
        self.downs = nn.ModuleList(
            DownLevel(a, b, time_dim, groups, is_last=i == len(pairs) - 1) for i, (a, b) in enumerate(pairs)
        )
        mid = dims[-1]
        self.mid_res1 = ResBlock(mid, mid, time_dim, groups)
        self.mid_attn = PreNormResidual(mid, Attention(mid))
        self.mid_res2 = ResBlock(mid, mid, time_dim, groups)
        self.ups = nn.ModuleList(
            UpLevel(a, b, time_dim, groups, is_last=i == len(pairs) - 1)
            for i, (a, b) in enumerate(reversed(pairs))
        )
        self.final_res = ResBlock(dim * 2, dim, time_dim, groups)
        self.head = nn.Conv2d(dim, out_channels, 1)

    @classmethod
    def from_size(cls, size: str, **kwargs) -> DiffUIRUNet:
        """Build a paper size: ``DiffUIRUNet.from_size("T")``."""
        if size not in SIZES:
            raise ValueError(f"unknown DiffUIR size {size!r}: expected one of {sorted(SIZES)}")
        return cls(**SIZES[size], **kwargs)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad right/bottom to the network's multiple (the official code's ``check_image_size``)."""
        h, w = x.shape[-2:]
        m = self.pad_multiple
        ph, pw = (m - h % m) % m, (m - w % m) % m
        if ph >= h or pw >= w:
            raise ValueError(
                f"image of {h}×{w} pixels is too small for this U-Net: reflect-padding to a multiple of {m} "
                f"needs each side larger than {m // 2} pixels"
            )
        return F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got tensor of shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = self.stem(self.pad(x))
        stem_out = x
        t = self.time_embed(time)

        skips = []
        for level in self.downs:
            x = level.res1(x, t)
            skips.append(x)
            x = level.attn(level.res2(x, t))
            skips.append(x)
            x = level.resample(x)

        x = self.mid_res2(self.mid_attn(self.mid_res1(x, t)), t)

        for level in self.ups:
            x = level.res1(torch.cat((x, skips.pop()), dim=1), t)
            x = level.attn(level.res2(torch.cat((x, skips.pop()), dim=1), t))
            x = level.resample(x)

        x = self.final_res(torch.cat((x, stem_out), dim=1), t)
        return self.head(x)[..., :h, :w]
