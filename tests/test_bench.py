"""benchmarks/diffuir_speed.py on a tiny setting: every column filled, the CSV merged, the machine described."""

import csv

import pytest

from benchmarks import diffuir_speed as bench


def test_rows_have_sizes_latencies_memory_and_training_throughput(tmp_path):
    out = tmp_path / "speed.csv"
    rows = bench.main(["--sizes", "T", "--res", "32", "--reps", "1", "--warmup", "0", "--train-res", "32",
                       "--train-batch", "1", "--threads", "1", "--compare-uncached", "--out", str(out)])
    assert [r["variant"] for r in rows] == ["fp32", "fp32+ws_uncached"]
    fp32, uncached = rows
    assert fp32["params"] == 886_435 and fp32["gmacs_forward"] > 0
    assert fp32["gflops_forward"] == pytest.approx(2 * fp32["gmacs_forward"], abs=2e-3)  # FLOPs = 2 MACs
    assert fp32["gmacs_sampling"] == pytest.approx(3 * fp32["gmacs_forward"], abs=2e-3)
    assert fp32["forward_ms"] > 0 and fp32["sampling_ms"] > 0 and fp32["train_samples_per_s"] > 0
    assert uncached["cached_sampling_ms"] > 0 and "train_samples_per_s" not in uncached
    assert fp32["cpu"] and fp32["cores"] and fp32["torch"] and fp32["mem_method"].startswith("cpu:")
    with out.open() as f:
        written = list(csv.DictReader(f))
    assert len(written) == 2 and tuple(written[0]) == bench.COLUMNS
    assert "| fp32 | T | 32 | 886,435 |" in out.with_suffix(".md").read_text()
    # a second run of one variant replaces its row and keeps the other
    bench.main(["--sizes", "T", "--res", "32", "--reps", "1", "--warmup", "0", "--no-train", "--threads", "1",
                "--variants", "fp32", "--out", str(out)])
    with out.open() as f:
        again = list(csv.DictReader(f))
    assert sorted(r["variant"] for r in again) == ["fp32", "fp32+ws_uncached"] and again[-1]["train_batch"] == ""


def test_ws_cache_disabled_gives_the_same_output():
    import torch

    from src.diffuir.unet import DiffUIRUNet

    net = DiffUIRUNet(dim=8, dim_mults=(1, 1, 1, 1)).eval()
    x, t = torch.rand(1, 6, 16, 16), torch.full((1,), 500.0)
    with torch.inference_mode():
        cached = net(x, t)
        with bench.ws_cache_disabled(net):
            uncached = net(x, t)
        assert torch.allclose(cached, uncached)
        assert all("forward" not in vars(m) for m in net.modules())  # patches removed
