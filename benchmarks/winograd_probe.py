"""Would Winograd convolutions lift the fp32 engine? ``python -m benchmarks.winograd_probe`` (issue 18, item 1).

OpenVINO's CPU plugin runs every convolution directly on x86-64 (no Winograd kernel), so the only way to try
Winograd F(2×2, 3×3) there is as a graph: per input channel 16 depthwise 4×4 stride-2 convolutions give the
transformed tiles BᵀdB, 16 1×1 convolutions multiply them with the transformed kernels GgGᵀ (4 instead of 9
multiply-adds per output pixel and channel pair), additions form AᵀmA and a pixel shuffle interleaves the 2×2
outputs (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks"). This probe times, in OpenVINO
fp32 with 2 threads and alternated rounds, (a) single 3×3 convolutions of DiffUIR-L's shapes at 256² and (b) one
DiffUIR-L forward with the 3×3 convolutions whose channels reach a threshold swapped for that graph, against the
engine's own graph. Not used by the engines: it measured 1.06× on the whole forward
(``experiments/bench/winograd_probe.md``).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.diffuir_speed import cpu_model
from benchmarks.engines import alternate

B_T = torch.tensor([[1.0, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
G = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
A_T = torch.tensor([[1.0, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)


class WinogradConv3x3(nn.Module):
    """``conv`` (3×3, stride 1, padding 1, bias; even H and W) as Winograd F(2×2, 3×3) in graph form."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        weight = conv.weight.detach().double()
        c_out, c_in = weight.shape[:2]
        kernels = torch.einsum("ak,bl,oikl->aboi", G, G, weight).reshape(16, c_out, c_in, 1, 1)
        self.register_buffer("kernels", kernels.float())  # GgGᵀ per tile position ab
        tiles = torch.einsum("ai,bj->abij", B_T, B_T).reshape(16, 1, 1, 4, 4).repeat(1, c_in, 1, 1, 1)
        self.register_buffer("tiles", tiles.float())  # BᵀdB as one depthwise filter per ab
        self.register_buffer("bias", conv.bias.detach().clone().reshape(1, c_out, 1, 1))
        # AᵀmA: output (r, s) sums m_ab with signs A_T[r, a]·A_T[s, b]
        self.terms = [[(a * 4 + b, float(A_T[r, a] * A_T[s, b])) for a in range(4) for b in range(4)
                       if A_T[r, a] * A_T[s, b] != 0] for r in range(2) for s in range(2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        m = [F.conv2d(F.conv2d(x, self.tiles[k], stride=2, padding=1, groups=c), self.kernels[k]) for k in range(16)]
        outs = []
        for terms in self.terms:
            acc = m[terms[0][0]] * terms[0][1]
            for k, sign in terms[1:]:
                acc = acc + m[k] if sign > 0 else acc - m[k]
            outs.append(acc)
        return F.pixel_shuffle(torch.stack(outs, 2).flatten(1, 2), 2) + self.bias


def swap_convs(net: nn.Module, min_channels: int) -> int:
    """Swap, in place, every 3×3 stride-1 convolution of ``net`` with both channel counts ≥ ``min_channels``."""
    swapped = 0
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if (type(child) is nn.Conv2d and child.kernel_size == (3, 3) and child.stride == (1, 1)
                    and child.padding == (1, 1) and child.groups == 1 and child.bias is not None
                    and min(child.in_channels, child.out_channels) >= min_channels):
                setattr(module, name, WinogradConv3x3(child))
                swapped += 1
    return swapped


def _summary(times: dict[str, list[float]], reference: str) -> dict[str, tuple[float, float]]:
    """name → (median seconds, median of the per-round ratios reference / name)."""
    return {k: (float(np.median(v)), float(np.median([a / b for a, b in zip(times[reference], v)])))
            for k, v in times.items()}


def probe_layers(shapes: list[tuple[int, int, int]], threads: int, rounds: int) -> list[dict]:
    import openvino as ov

    core, rows = ov.Core(), []
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    for c_in, c_out, side in shapes:
        conv = nn.Conv2d(c_in, c_out, 3, padding=1).eval()
        x = torch.randn(1, c_in, side, side)
        requests, diffs = {}, {}
        for name, module in (("direct", conv), ("winograd", WinogradConv3x3(conv).eval())):
            with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
                path = Path(tmp) / "conv.onnx"
                buffer = io.BytesIO()
                torch.onnx.export(module, (x,), buffer, input_names=["x"], opset_version=17, dynamo=False)
                path.write_bytes(buffer.getvalue())
                requests[name] = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()
                out = np.array(requests[name].infer({"x": x.numpy()})[0])
                diffs[name] = float(np.abs(out - conv(x).numpy()).max())
        feed = {"x": x.numpy()}
        calls = {k: (lambda r=r, f=feed: r.infer(f)) for k, r in requests.items()}
        summary = _summary(alternate(calls, rounds), "direct")
        rows.append({"what": f"conv {c_in}→{c_out} at {side}²", "direct_ms": summary["direct"][0] * 1e3,
                     "winograd_ms": summary["winograd"][0] * 1e3, "speedup": summary["winograd"][1],
                     "max_abs_diff": diffs["winograd"]})
    return rows


def probe_network(size: str, side: int, thresholds: list[int], threads: int, rounds: int) -> list[dict]:
    from src.diffuir.engines import OpenVinoEngine, export_onnx, fold_weight_standardization
    from src.diffuir.inference_forms import to_inference_forms
    from src.diffuir.unet import DiffUIRUNet

    net = DiffUIRUNet.from_size(size).eval()
    x, t = torch.randn(1, net.in_channels, side, side), torch.full((1,), 894.5)
    with torch.no_grad():
        reference = fold_weight_standardization(net)(x, t)
    engines, swapped, diffs = {}, {}, {}
    for threshold in [None, *thresholds]:
        name = "engine's graph" if threshold is None else f"winograd, channels ≥ {threshold}"
        forms = to_inference_forms(fold_weight_standardization(net))
        swapped[name] = 0 if threshold is None else swap_convs(forms, threshold)
        engines[name] = OpenVinoEngine(forms, threads=threads, model=export_onnx(forms, inference_forms=False))
        diffs[name] = float((engines[name](x, t) - reference).abs().max())
    summary = _summary(alternate({k: (lambda e=e: e(x, t)) for k, e in engines.items()}, rounds), "engine's graph")
    return [{"what": f"DiffUIR-{size} forward at {side}², {k} ({swapped[k]} convolutions)",
             "direct_ms": summary["engine's graph"][0] * 1e3, "winograd_ms": summary[k][0] * 1e3,
             "speedup": summary[k][1], "max_abs_diff": diffs[k]} for k in engines if swapped[k]]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="*", default=["64,64,256", "128,128,128", "256,256,64", "512,512,32",
                                                   "768,256,64", "1024,512,32"], help="C_in,C_out,side")
    p.add_argument("--size", default="L")
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--thresholds", type=int, nargs="*", default=[256, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default="experiments/bench/winograd_probe.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = os.getloadavg()[0]
    rows = probe_layers([tuple(int(v) for v in s.split(",")) for s in args.shapes], args.threads, args.rounds)
    rows += probe_network(args.size, args.side, args.thresholds, args.threads, args.rounds)
    lines = [f"# Winograd F(2×2, 3×3) as an OpenVINO fp32 graph (`python -m benchmarks.winograd_probe`, "
             f"{time.strftime('%Y-%m-%d %H:%M')})", "",
             f"CPU {cpu_model()}, {args.threads} threads, {args.rounds} alternated rounds, "
             f"load {load:.2f} → {os.getloadavg()[0]:.2f}. Milliseconds: medians; speed-up: median of the per-round "
             "ratios; max abs diff: to PyTorch's direct convolution (the forward's: to the eager network).", "",
             "| what | direct / engine ms | Winograd ms | speed-up | max abs diff |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['what']} | {r['direct_ms']:.1f} | {r['winograd_ms']:.1f} | {r['speedup']:.2f}× | "
              f"{r['max_abs_diff']:.1e} |" for r in rows]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
