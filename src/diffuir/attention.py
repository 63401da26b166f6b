"""Attention layers of the DiffUIR U-Net: linear attention at every level, softmax attention in the middle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.diffuir.blocks import ChannelLayerNorm


class LinearAttention(nn.Module):
    """Efficient attention (Shen et al., 2021): softmax(q) over channels, softmax(k) over pixels, out = (k vᵀ)ᵀ q.

    Cost is linear in the number of pixels, so it runs at every U-Net level.
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)
        self.out_norm = ChannelLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.to_qkv(x).reshape(b, 3, self.heads, -1, h * w).unbind(1)  # each (b, heads, d, n)
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        v = v / (h * w)
        context = torch.matmul(k, v.transpose(-1, -2))  # (b, heads, d, e)
        out = torch.matmul(context.transpose(-1, -2), q)  # (b, heads, e, n)
        return self.out_norm(self.to_out(out.reshape(b, -1, h, w)))


class Attention(nn.Module):
    """Multi-head softmax self-attention over pixels (scaled dot product, scale dim_head^-1/2)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads = heads
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.to_qkv(x).reshape(b, 3, self.heads, -1, h * w).transpose(-1, -2).unbind(1)  # (b, heads, n, d)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(-1, -2).reshape(b, -1, h, w))


class PreNormResidual(nn.Module):
    """x + fn(LayerNorm(x)), the residual pre-norm wrapper around each attention layer."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(self.norm(x))
