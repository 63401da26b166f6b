"""Inference forms of three DiffUIR blocks: the same function in the shape CPU graph compilers run fastest.

Same function as the trained blocks (DiffUIR §4.2 network; max abs difference ~1e-6, ``tests/test_engines.py``),
written so that an exported graph stays in the channels-last layout OpenVINO and onnxruntime pick for their
convolutions. The trained forms reshape N×C×H×W tensors into groups and heads (``nn.GroupNorm`` → N×G×(C/G·H·W);
linear attention → N×3×heads×d×(H·W)); every such reshape makes the runtime transpose a full-resolution tensor
back to N×C×H×W first, and those transposes took 38% of OpenVINO's time for DiffUIR-L at 256² (380 of 1002 ms
per forward, ``python -m benchmarks.engines --profile`` → ``experiments/bench/engines_profile.md``). The forms
here keep every large tensor either 4-D N×C×H×W (reductions over H, W or C, per-channel broadcasts) or tokens
N×(H·W)×C, which is the same memory in channels-last, and leave the reshapes to tensors of C×C values:

* :class:`GroupNormStats` — GroupNorm from per-channel moments averaged over each group by a C×C matrix
  (two-pass: mean, then the mean of squared deviations, as ``torch.group_norm`` does);
* :class:`LinearAttentionTokens` — the pre-normed residual linear attention on tokens: softmax of q over each
  head's channels is a softmax over the last axis, softmax of k over pixels one over the token axis; the
  per-head contexts k·vᵀ are the diagonal blocks of one C×C product, and the output projection is folded into
  them, so the full-resolution work is three 1×1 convolutions, two softmaxes and two matrix products;
* :class:`UpsampleTransposed` — nearest ×2 upsampling followed by a 3×3 convolution is one stride-2 4×4
  transposed convolution whose taps are sums of the 3×3 taps: 16 instead of 36 multiply-adds per input pixel and
  channel pair (2–6% of a DiffUIR-B/L forward in OpenVINO).

Only the inference engines use these (:func:`src.diffuir.engines.export_onnx`); training keeps the trained forms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.diffuir.attention import LinearAttention, PreNormResidual
from src.diffuir.blocks import ConvNormAct, Upsample


class GroupNormStats(nn.Module):
    """``nn.GroupNorm`` (affine) computed without reshaping the feature map: per-channel means over H×W,
    averaged within each group by the block-diagonal matrix A (A[i, j] = G/C when channels i, j share a group)."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        groups, channels = norm.num_groups, norm.num_channels
        size = channels // groups
        self.register_buffer("group_mean", torch.block_diag(*[torch.full((size, size), 1.0 / size)] * groups))
        self.register_buffer("weight", norm.weight.detach().clone().reshape(1, channels, 1, 1))
        self.register_buffer("bias", norm.bias.detach().clone().reshape(1, channels, 1, 1))
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        mean = (x.mean((2, 3)) @ self.group_mean).reshape(b, c, 1, 1)
        centred = x - mean
        var = ((centred * centred).mean((2, 3)) @ self.group_mean).reshape(b, c, 1, 1)
        return centred * ((var + self.eps).rsqrt() * self.weight) + self.bias


class LinearAttentionTokens(nn.Module):
    """x + LinearAttention(ChannelLayerNorm(x)) (:class:`PreNormResidual` around :class:`LinearAttention`).

    The pre-norm gain is folded into the q/k/v projections; with tokens T = N×(H·W)×hidden,
    context = blockdiag_h(softmax_pixels(k)ᵀ · v) / (H·W) and out = softmax_head-channels(q)·scale ·
    (context · W_outᵀ) + b_out, followed by the output LayerNorm over channels (trained form:
    :meth:`LinearAttention.forward`).
    """

    EXP_BOUND = 60.0  # exp(±60) times any pixel count stays inside fp32's (and bf16's) range

    def __init__(self, block: PreNormResidual):
        super().__init__()
        attn: LinearAttention = block.fn
        channels = block.norm.gain.shape[1]
        hidden = attn.to_out.weight.shape[1]
        self.heads, self.scale, self.channels, self.hidden = attn.heads, attn.scale, int(channels), int(hidden)
        weight = attn.to_qkv.weight.detach() * block.norm.gain.detach().reshape(1, channels, 1, 1)
        self.register_buffer("w_q", weight[:hidden].clone())
        self.register_buffer("w_k", weight[hidden:2 * hidden].clone())
        self.register_buffer("w_v", weight[2 * hidden:].clone())
        self.register_buffer("w_out_t", attn.to_out.weight.detach()[:, :, 0, 0].t().contiguous())  # hidden×C
        self.register_buffer("b_out", attn.to_out.bias.detach().clone())
        self.register_buffer("out_gain", attn.out_norm.gain.detach().reshape(channels).clone())
        dim_head = hidden // attn.heads
        self.register_buffer("head_blocks", torch.block_diag(*[torch.ones(dim_head, dim_head)] * attn.heads))
        # |q|, |k| ≤ ‖row of W‖·√C, as the layer-normed y has ‖y‖² ≤ C per pixel: below EXP_BOUND, exp needs no max
        bound = float(weight[:2 * hidden, :, 0, 0].norm(dim=1).max()) * channels ** 0.5
        self.shift_free = bound <= self.EXP_BOUND

    def _tokens(self, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        b, _, h, w = y.shape
        return F.conv2d(y, weight).permute(0, 2, 3, 1).reshape(b, h * w, self.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)  # ChannelLayerNorm (fp32 eps)
        y = (x - mean) * (var + 1e-5).rsqrt()
        if self.shift_free:
            q, context = self._shift_free(y)
        else:
            q = self._tokens(y, self.w_q).reshape(b, h * w, self.heads, -1).softmax(-1).reshape(b, h * w, self.hidden)
            k = self._tokens(y, self.w_k).softmax(1)
            v = self._tokens(y, self.w_v)
            context = torch.matmul(k.transpose(1, 2), v)
        context = context * (self.head_blocks / (h * w))
        out = torch.matmul(q * self.scale, torch.matmul(context, self.w_out_t)) + self.b_out
        out = F.layer_norm(out, (self.channels,), self.out_gain, None, 1e-5)
        return x + out.reshape(b, h, w, self.channels).permute(0, 3, 1, 2)


    def _shift_free(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(softmax of q over each head's channels, softmax_pixels(k)ᵀ·v) without a softmax node: with |q|, |k|
        bounded (``shift_free``) exp needs no max subtracted, k's normaliser over pixels comes out of the context
        product as the column of v's constant channel, and q's per-head sums are one product with ``head_blocks``
        (CPU runtimes run a softmax over the token axis slowly: 34% of an OpenVINO DiffUIR-T forward at 512²)."""
        b, _, h, w = y.shape
        eq = self._tokens(y, self.w_q).exp()
        q = eq / torch.matmul(eq, self.head_blocks)
        ek = self._tokens(y, self.w_k).exp()
        # [y; 1]ᵀ·exp(k): v = y·W_vᵀ is never formed, and the last row is k's normaliser Σ_pixels exp(k)
        y1 = torch.cat((y.reshape(b, -1, h * w), torch.ones_like(y[:, :1]).reshape(b, 1, h * w)), 1)
        gram = torch.matmul(y1, ek)  # (b, C + 1, hidden)
        context = torch.matmul(self.w_v[:, :, 0, 0], gram[:, :-1]).transpose(1, 2)  # (b, hidden_k, hidden_v)
        return q, context / gram[:, -1:].transpose(1, 2)


class UpsampleTransposed(nn.Module):
    """:class:`Upsample` (nearest ×2, then a 3×3 convolution with zero padding 1) as ``conv_transpose2d`` with
    stride 2, padding 1 and a 4×4 kernel. Output row 2i + d − 1 (d = 0..3) of input row i sums the 3×3 rows that
    land on it after the upsampling: taps (w₂, w₁ + w₂, w₀ + w₁, w₀), the same along columns."""

    # TAPS[d, k] = 1 when 3×3 tap k contributes to transposed tap d
    TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))

    def __init__(self, up: Upsample):
        super().__init__()
        taps = torch.tensor(self.TAPS, dtype=up.conv.weight.dtype)
        kernel = torch.einsum("ak,bl,oikl->ioab", taps, taps, up.conv.weight.detach())  # (C_in, C_out, 4, 4)
        self.register_buffer("weight", kernel.contiguous())
        self.register_buffer("bias", up.conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, stride=2, padding=1)


def to_inference_forms(net: nn.Module) -> nn.Module:
    """Swap, in place, every GroupNorm of a :class:`ConvNormAct`, every pre-normed linear attention and every
    upsampling of ``net`` (a DiffUIR U-Net in eval mode, float32) for the forms above; returns ``net``."""
    for module in list(net.modules()):
        if isinstance(module, ConvNormAct) and isinstance(module.norm, nn.GroupNorm):
            module.norm = GroupNormStats(module.norm)
        for name, child in list(module.named_children()):
            if isinstance(child, PreNormResidual) and isinstance(child.fn, LinearAttention):
                setattr(module, name, LinearAttentionTokens(child))
            elif isinstance(child, Upsample):
                setattr(module, name, UpsampleTransposed(child))
    return net
