"""benchmarks/winograd_probe.py: the Winograd graph form computes the same convolution (the probe's premise)."""

import torch
from torch import nn

from benchmarks.winograd_probe import WinogradConv3x3, swap_convs


def test_winograd_form_equals_the_direct_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, padding=1).eval()
    x = torch.randn(2, 5, 12, 10)
    with torch.no_grad():
        assert (WinogradConv3x3(conv)(x) - conv(x)).abs().max() < 1e-5


def test_swap_convs_takes_only_3x3_stride_1_convolutions_wide_enough():
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(8, 8, 1),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1))
    assert swap_convs(net, 8) == 1 and isinstance(net[0], WinogradConv3x3) and type(net[1]) is nn.Conv2d
