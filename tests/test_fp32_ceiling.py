"""benchmarks/fp32_ceiling.py: the bound on any direct-convolution fp32 engine's speed-up over a reference sampler."""

from __future__ import annotations

import pytest
import torch

from benchmarks import fp32_ceiling as fc
from src.diffuir.complexity import forward_macs, forward_macs_by_op
from src.diffuir.unet import DiffUIRUNet


def test_convolution_macs_by_hand():
    """The convolution count of a forward is the network's Conv2d layers summed by hand (k²·C_in·C_out·H·W);
    the rest is attention and the time MLP; the sampler counts three forwards."""
    torch.manual_seed(0)
    net = DiffUIRUNet.from_size("T").eval()
    sizes = {}

    def hook(module, inputs, output):
        sizes[module] = output.shape[-2:]

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(1, 6, 32, 32), torch.zeros(1))
    for h in handles:
        h.remove()
    by_hand = sum(m.weight.numel() * hw[0] * hw[1] for m, hw in sizes.items())
    by_op = forward_macs_by_op(net, 32, 32)
    assert by_op["convolution"] == by_hand
    assert sum(by_op.values()) == forward_macs(net, 32, 32) > by_op["convolution"]
    assert fc.sampler_macs(net, 32) == (3 * by_hand, 3 * forward_macs(net, 32, 32))


def test_gemm_is_the_matrix_product():
    call = fc.gemm(8)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 8, generator=gen), torch.randn(8, 8, generator=gen)
    assert torch.allclose(call(), a @ b)


def test_ceiling_group_alternates_and_bounds(tmp_path):
    """A real group at 32² with the suite's own sampler as the reference (no official checkout in tests):
    per-round ratios, the ceiling from the measured peak, and the GMAC/s the target needs."""
    row = fc.ceiling_group("T", 32, None, rounds=2, engine="eager", gemm_n=256, reference="suite", log=lambda *_: None)
    assert row["rounds"] == 2 and row["engine"] == "eager"
    assert row["speedup_q1"] <= row["speedup"] <= row["speedup_q3"] and row["speedup"] > 0
    assert row["ceiling_q1"] <= row["ceiling"] <= row["ceiling_q3"]
    # ceiling = t_ref * peak / conv (medians of per-round values, so compare loosely)
    expected = row["official_s"] * row["peak_gmacs_per_s"] / row["conv_gmacs"]
    assert row["ceiling"] == pytest.approx(expected, rel=0.5)
    assert row["target_needs_gmacs_per_s"] == pytest.approx(2.5 * row["conv_gmacs"] / row["official_s"], rel=0.01)
    assert 0 < row["engine_conv_share_of_peak"]


def test_markdown_names_the_rows_below_target():
    facts = {"run": "now", "cpu": "cpu", "cores": 2, "threads": 2, "mhz": "2600"}
    base = {"size": "L", "res": 256, "conv_gmacs": 352.4, "official_s": 4.77, "official_gmacs_per_s": 75.2,
            "engine_s": 2.52, "engine_gmacs_per_s": 142.0, "gemm_n": 4096, "peak_gmacs_per_s": 169.0,
            "engine_conv_share_of_peak": 0.83, "speedup": 1.94, "speedup_q1": 1.9, "speedup_q3": 2.0,
            "ceiling_q1": 2.2, "ceiling_q3": 2.3, "target": 2.5, "target_needs_gmacs_per_s": 184.7,
            "load_before": 0.1, "load_after": 0.9}
    md = fc.to_markdown([{**base, "ceiling": 2.29}, {**base, "size": "T", "ceiling": 4.1}], facts)
    assert "| L | 256 | 352.4 |" in md and "**2.29×**" in md and "83 % of peak" in md
    assert "Below the 2.5× target even at the ceiling: L at 256²." in md
    assert "Every row" in fc.to_markdown([{**base, "ceiling": 4.1}], facts)


def test_main_needs_the_official_checkout(tmp_path, capsys):
    with pytest.raises(SystemExit):
        fc.main(["--out", str(tmp_path / "x")])
    assert "git clone https://github.com/iSEE-Laboratory/DiffUIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fc.main(["--official", str(tmp_path), "--out", str(tmp_path / "x")])
    assert "no src/model.py" in capsys.readouterr().err
