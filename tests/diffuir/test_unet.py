import pytest
import torch

from src.diffuir.blocks import WeightStandardizedConv2d
from src.diffuir.complexity import PAPER_TABLE1, count_params
from src.diffuir.unet import SIZES, DiffUIRUNet

# Counted on the official code (shared/reference/diffuir_official_facts.md).
OFFICIAL_PARAMS = {"T": 886_435, "S": 3_268_643, "B": 12_406_851, "L": 36_261_187}


@pytest.mark.parametrize("size", list(SIZES))
def test_parameter_counts_match_official_and_paper(size):
    n = count_params(DiffUIRUNet.from_size(size))
    assert n == OFFICIAL_PARAMS[size]
    assert abs(n / 1e6 - PAPER_TABLE1[size][0]) / PAPER_TABLE1[size][0] < 0.01


@pytest.mark.parametrize("hw", [(32, 32), (37, 53), (9, 70)])
def test_any_size_keeps_shape(hw):
    net = DiffUIRUNet(dim=16, dim_mults=(1, 2), in_channels=6).eval()
    out = net(torch.randn(2, 6, *hw), torch.tensor([1.0, 900.0]))
    assert out.shape == (2, 3, *hw)
    assert torch.isfinite(out).all()


def test_padding_does_not_leak_into_crop():
    """The output on an image equals the same region of the output on its reflect-padded version."""
    net = DiffUIRUNet(dim=16, dim_mults=(1, 1, 1, 1), in_channels=6).eval()
    x = torch.randn(1, 6, 40, 44)
    t = torch.tensor([500.0])
    padded = torch.nn.functional.pad(x, (0, 4, 0, 8), mode="reflect")
    torch.testing.assert_close(net(x, t), net(padded, t)[..., :40, :44])


def test_too_small_and_wrong_channels_are_clear_errors():
    net = DiffUIRUNet(dim=16, dim_mults=(1, 1, 1, 1), in_channels=6)
    with pytest.raises(ValueError, match="too small"):
        net(torch.randn(1, 6, 8, 40), torch.zeros(1))
    with pytest.raises(ValueError, match="expected 6 input channels"):
        net(torch.randn(1, 3, 32, 32), torch.zeros(1))
    with pytest.raises(ValueError, match="unknown DiffUIR size"):
        DiffUIRUNet.from_size("XL")


def test_weight_standardisation_cache_is_exact_and_invalidated():
    conv = WeightStandardizedConv2d(4, 8, 3, padding=1).eval()
    x = torch.randn(1, 4, 10, 10)
    with torch.no_grad():
        first = conv(x)
        w = conv.standardized_weight()
        assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.zeros(8), atol=1e-6)
        raw_var = conv.weight.var(dim=(1, 2, 3), unbiased=False)
        torch.testing.assert_close(w.var(dim=(1, 2, 3), unbiased=False), raw_var / (raw_var + 1e-5))
        assert torch.equal(conv(x), first)  # served from the cache
        conv.weight.mul_(2).add_(0.5)  # an in-place update bumps the version counter
        expected = torch.nn.functional.conv2d(x, conv.standardized_weight(), conv.bias, padding=1)
        torch.testing.assert_close(conv(x), expected)
    conv.train()
    assert conv(x).requires_grad  # training path recomputes with autograd
