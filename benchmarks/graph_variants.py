"""Candidate fp32 graph forms and OpenVINO settings for DiffUIR (issue 18 item 1), timed against the shipped graph:
``python -m benchmarks.graph_variants --size L --res 256 --rounds 6 --threads 2``.

Every candidate computes the same function (max abs difference to the eager network printed, ≤ 1e-4 required) and
is kept in :mod:`src.diffuir.inference_forms` / :mod:`src.diffuir.engines` only if it measures faster here, one
forward timed in alternation (:func:`benchmarks.engines.alternate`) against ``base`` (today's graph and settings):

* ``film``: the time FiLM x·(s+1)+shift folded into GroupNorm's per-(sample, channel) affine, so conv → norm →
  FiLM → SiLU has one full-resolution multiply-add fewer;
* ``gnop``: GroupNorm as ONNX's own ``GroupNormalization`` op (opset 18, affine outside), OpenVINO's native kernel;
* ``pin`` / ``denorm`` / ``hint``: the base graph with OpenVINO's ``ENABLE_CPU_PINNING``, ``CPU_DENORMALS_OPTIMIZATION``
  or a one-stream THROUGHPUT hint.
"""

from __future__ import annotations

import io
import statistics
import sys

import torch
import torch.nn.functional as F
from torch import nn

from src.diffuir import engines as E
from src.diffuir import inference_forms as IF
from src.diffuir.blocks import ConvNormAct
from src.diffuir.unet import DiffUIRUNet


class _GN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, groups, eps):
        return F.group_norm(x, groups, eps=eps)

    @staticmethod
    def symbolic(g, x, groups, eps):
        scale = g.op("Constant", value_t=torch.ones(groups))
        bias = g.op("Constant", value_t=torch.zeros(groups))
        return g.op("GroupNormalization", x, scale, bias, num_groups_i=groups, epsilon_f=eps)


class GNOp(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.register_buffer("weight", norm.weight.detach().clone().reshape(1, -1, 1, 1))
        self.register_buffer("bias", norm.bias.detach().clone().reshape(1, -1, 1, 1))

    def forward(self, x):
        return _GN.apply(x, self.groups, self.eps) * self.weight + self.bias


class FoldedCNA(nn.Module):
    """conv → GroupNormStats with the FiLM folded into its per-(sample, channel) affine → SiLU."""
    def __init__(self, block):
        super().__init__()
        self.conv, gn = block.conv, block.norm  # norm already GroupNormStats
        self.gn = gn

    def forward(self, x, scale_shift=None):
        y = self.conv(x)
        gn = self.gn
        b, c = y.shape[:2]
        mean = (y.mean((2, 3)) @ gn.group_mean).reshape(b, c, 1, 1)
        centred = y - mean
        var = ((centred * centred).mean((2, 3)) @ gn.group_mean).reshape(b, c, 1, 1)
        a = (var + gn.eps).rsqrt() * gn.weight
        off = gn.bias
        if scale_shift is not None:
            scale, shift = scale_shift
            a = a * (scale + 1)
            off = off * (scale + 1) + shift
        return F.silu(centred * a + off)


def variant_net(net, name):
    folded = E.fold_weight_standardization(net).cpu().float()
    if name == "gnop":
        for m in list(folded.modules()):
            if isinstance(m, ConvNormAct):
                m.norm = GNOp(m.norm)
        IF.to_inference_forms(folded)
        return folded, 18
    folded = IF.to_inference_forms(folded)
    if name == "film":
        for m in list(folded.modules()):
            for n, ch in list(m.named_children()):
                if isinstance(ch, ConvNormAct):
                    setattr(m, n, FoldedCNA(ch))
    return folded, 17


def export_variant(net, name):
    folded, opset = variant_net(net, name)
    side = 4 * folded.pad_multiple
    buf = io.BytesIO()
    import warnings

    import onnx

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(folded, (torch.zeros(1, folded.in_channels, side, side), torch.full((1,), 500.0)), buf,
                          input_names=["x", "t"], output_names=["res"], opset_version=opset,
                          dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}, "t": {0: "batch"},
                                        "res": {0: "batch", 2: "height", 3: "width"}}, do_constant_folding=True,
                          dynamo=False)
    return E._without_initializer_identities(onnx.load_from_string(buf.getvalue())).SerializeToString(), folded


def main(size="T", res=64, rounds=0, threads=1, names=("base", "film", "gnop"), log=print) -> dict:
    """Exactness of every candidate (and, with ``rounds``, its alternated speed-up over the first); returns
    {name: max abs difference to the eager network}."""
    torch.manual_seed(0)
    net = DiffUIRUNet.from_size(size).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x, t = torch.randn(1, 6, res, res), torch.full((1,), 300.0)
    with torch.inference_mode():
        ref = net(x, t)
    fns, diffs = {}, {}
    extra = {"pin": {"ENABLE_CPU_PINNING": True}, "denorm": {"CPU_DENORMALS_OPTIMIZATION": True},
             "hint": {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 1}}
    for name in names:
        b, folded = export_variant(net, "base" if name in extra else name)
        with torch.inference_mode():
            eager_diff = (folded(x, t) - ref).abs().max().item()
        eng = E.OpenVinoEngine(net, threads=threads, model=b)
        eng.config.update(extra.get(name, {}))
        out = eng(x, t)
        diffs[name] = (out - ref).abs().max().item()
        log(f"{name}: max abs diff to eager {diffs[name]:.2e} (its PyTorch form {eager_diff:.2e}), output scale "
            f"{ref.abs().max().item():.2f}")
        fns[name] = (lambda eng=eng: eng(x, t))
    if rounds:
        from benchmarks.engines import alternate
        times = alternate(fns, rounds, warmup=1)
        base = times[names[0]]
        for n, ts in times.items():
            ratios = sorted(a / b for a, b in zip(base, ts))
            log(f"{size} {res}² {n}: median {1e3 * statistics.median(ts):.1f} ms per forward, speed-up vs {names[0]} "
                f"{statistics.median(ratios):.3f} [{ratios[0]:.3f}–{ratios[-1]:.3f}]")
    return diffs


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="L", choices=["T", "S", "B", "L"])
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--rounds", type=int, default=6, help="alternated rounds (0: exactness only)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--names", nargs="+", default=["base", "film", "gnop", "pin", "denorm", "hint"])
    a = p.parse_args(sys.argv[1:])
    torch.set_num_threads(a.threads)
    main(a.size, a.res, a.rounds, a.threads, a.names)
