"""Parameters and multiply-adds of the DiffUIR sizes beside the paper's Table 1: ``python -m src.diffuir.complexity``.

Multiply-adds (MACs) are counted by PyTorch's ``FlopCounterMode`` (convolutions, linear layers and the attention
matrix products; FLOPs = 2·MACs), for every convolution, the weight-standardised ones included. The paper's
"FLOPS (G)" column came from thop over the whole 3-step sampling at 256², which skips the weight-standardised
convolutions (thop matches layer classes exactly, and they are a subclass of Conv2d) and is off by a factor of
10 (github.com/iSEE-Laboratory/DiffUIR issue #36): 1.72 / 2.40 / 7.19 / 9.88.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from src.diffuir.unet import SIZES, DiffUIRUNet

PAPER_TABLE1 = {"T": (0.89, 1.72), "S": (3.27, 2.40), "B": (12.41, 7.19), "L": (36.26, 9.88)}


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@torch.no_grad()
def forward_macs(net: DiffUIRUNet, height: int = 256, width: int = 256) -> int:
    """Multiply-adds of one forward pass on a 1×C×H×W input."""
    x = torch.zeros(1, net.in_channels, height, width)
    with FlopCounterMode(display=False) as counter:
        net(x, torch.zeros(1))
    return counter.get_total_flops() // 2


@torch.no_grad()
def forward_macs_by_op(net: DiffUIRUNet, height: int = 256, width: int = 256) -> dict[str, int]:
    """Multiply-adds of one forward pass on a 1×C×H×W input per ATen op (``"convolution"``, ``"bmm"``, ...)."""
    x = torch.zeros(1, net.in_channels, height, width)
    with FlopCounterMode(display=False) as counter:
        net(x, torch.zeros(1))
    return {str(op).removeprefix("aten."): flops // 2 for op, flops in counter.get_flop_counts()["Global"].items()}


def complexity_table(size: int = 256, steps: int = 3) -> list[dict]:
    rows = []
    for name in SIZES:
        net = DiffUIRUNet.from_size(name).eval()
        macs = forward_macs(net, size, size)
        paper_params, paper_flops = PAPER_TABLE1[name]
        rows.append({"size": name, "params": count_params(net), "paper_params_M": paper_params,
                     "gmacs_forward": macs / 1e9, "gmacs_sampling": steps * macs / 1e9, "paper_flops_G": paper_flops})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="square input size (default 256)")
    parser.add_argument("--steps", type=int, default=3, help="sampling steps (default 3)")
    args = parser.parse_args()
    print(f"DiffUIR complexity at {args.size}×{args.size}, batch 1 (MACs = multiply-adds; 1 MAC = 2 FLOPs)\n")
    print(f"| size | params | paper params (M) | GMACs / forward | GMACs / {args.steps}-step sampling "
          "| paper 'FLOPS (G)' |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in complexity_table(args.size, args.steps):
        print(f"| {r['size']} | {r['params']:,} | {r['paper_params_M']} | {r['gmacs_forward']:.2f} "
              f"| {r['gmacs_sampling']:.2f} | {r['paper_flops_G']} |")
    print("\nThe paper's column is thop's count of the 3-step sampling divided by 1e10 with the weight-standardised"
          "\nconvolutions left out (see this module's docstring); the GMACs here count every operation.")


if __name__ == "__main__":
    main()
