"""Offline weights: missing files give MetricUnavailable (never a download, never a number); weight-free metrics
run for real and agree with independent references."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from src.metrics import perceptual
from src.metrics.fidelity import psnr, ssim
from src.metrics.perceptual import PYIQA_METRICS, MetricUnavailable, create_pyiqa_metric, local_weights_only
from src.metrics.registry import METRICS, MetricSuite, quantize

NEEDS_PYIQA = pytest.mark.skipif(importlib.util.find_spec("pyiqa") is None,
                                 reason="pyiqa is not importable in this environment")

WEIGHTED = [n for n in METRICS if n in PYIQA_METRICS]


def _batch(b=2, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, 3, size, size, generator=g)
    out = (gt + 0.08 * torch.randn(b, 3, size, size, generator=g)).clamp(0, 1)
    lq = gt * 0.3
    return out, gt, lq


def test_empty_weights_folder_marks_every_weighted_metric_not_computed(tmp_path):
    suite = MetricSuite(["psnr", "ssim", "loe", *WEIGHTED], tmp_path / "metrics")
    assert set(suite.unavailable) == set(WEIGHTED)
    assert suite.available == ["psnr", "ssim", "loe"]
    lpips = suite.unavailable["lpips"]
    assert lpips.needed_file == "LPIPS_v0.1_alex-df73285e.pth, alexnet-owt-7be5be79.pth"
    assert lpips.put_it_here == f"{tmp_path / 'metrics' / 'checkpoints'}, {tmp_path / 'metrics' / 'pyiqa'}"
    assert lpips.cell() == (f"not computed (needs {tmp_path / 'metrics' / 'pyiqa' / 'LPIPS_v0.1_alex-df73285e.pth'}, "
                            f"{tmp_path / 'metrics' / 'checkpoints' / 'alexnet-owt-7be5be79.pth'})")
    assert "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/LPIPS_v0.1_alex" in lpips.explain()
    assert "clip/RN50.pt" in suite.unavailable["clipiqa"].explain()
    rows = suite.score_batch(*_batch())
    assert all(set(r) == {"psnr_in", "ssim_in", "psnr", "ssim", "loe"} for r in rows)  # no made-up numbers
    assert not (tmp_path / "metrics").exists()  # nothing was downloaded or created


@NEEDS_PYIQA
def test_weight_file_names_are_the_ones_installed_pyiqa_loads():
    """Guard against a pyiqa upgrade renaming files: every listed pyiqa file is named in pyiqa's source."""
    import pyiqa  # noqa: F401  (imported by now anyway)
    import torchvision.models as tvm

    source = "\n".join(p.read_text(errors="ignore") for p in Path(pyiqa.__file__).parent.rglob("*.py"))
    torchvision_urls = {tvm.AlexNet_Weights.IMAGENET1K_V1.url, tvm.VGG16_Weights.IMAGENET1K_V1.url}
    for name, spec in PYIQA_METRICS.items():
        assert re.search(rf"['\"]{re.escape(spec.pyiqa_name)}['\"]\s*:", source), name
        for f in spec.files:
            if f.path.startswith("pyiqa/"):
                assert f.name in source, (name, f.name)
            elif f.path.startswith("checkpoints/"):
                assert f.url in torchvision_urls, (name, f.url)
            else:
                assert f.url in source, (name, f.url)


@NEEDS_PYIQA
def test_a_download_pyiqa_attempts_is_refused_and_reported(tmp_path, monkeypatch):
    """Even if the file table missed something, pyiqa never downloads: the metric becomes unavailable."""
    monkeypatch.setitem(PYIQA_METRICS, "niqe", perceptual.PyiqaSpec("niqe", ()))  # pretend it needs nothing
    with pytest.raises(MetricUnavailable) as info:
        create_pyiqa_metric("niqe", tmp_path)
    assert info.value.needed_file == "niqe_modelparameters.mat"
    assert info.value.missing[0][1] == tmp_path / "pyiqa" / "niqe_modelparameters.mat"
    assert not (tmp_path / "pyiqa" / "niqe_modelparameters.mat").exists()


@NEEDS_PYIQA
def test_a_corrupt_weight_file_is_reported_not_used(tmp_path):
    (tmp_path / "pyiqa").mkdir()
    (tmp_path / "pyiqa" / "niqe_modelparameters.mat").write_bytes(b"not a mat file")
    suite = MetricSuite(["niqe", "psnr"], tmp_path)
    assert "could not be built" in suite.unavailable["niqe"].cell()
    assert suite.available == ["psnr"]


def test_local_weights_only_restores_hub_dir_and_download_functions(tmp_path):
    import urllib.request

    hub, urlopen, download = torch.hub.get_dir(), urllib.request.urlopen, torch.hub.download_url_to_file
    with local_weights_only(tmp_path):
        assert torch.hub.get_dir() == str(tmp_path)
        with pytest.raises(perceptual.DownloadRefused):
            torch.hub.load_state_dict_from_url("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")
        with pytest.raises(perceptual.DownloadRefused):
            urllib.request.urlopen("https://example.org/x")
    assert (torch.hub.get_dir(), urllib.request.urlopen, torch.hub.download_url_to_file) == (hub, urlopen, download)


def test_weight_free_metrics_are_computed_for_real_on_8bit_images():
    out, gt, lq = _batch()
    suite = MetricSuite(["psnr", "ssim", "psnr_rgb", "ssim_rgb", "loe"], "unused")
    rows = suite.score_batch(out, gt, lq)
    q = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # noqa: E731
    for i, row in enumerate(rows):
        a, b = q(out[i]).astype(np.float64), q(gt[i]).astype(np.float64)
        assert row["psnr_rgb"] == pytest.approx(10 * np.log10(255**2 / np.mean((a - b) ** 2)), abs=1e-9)
        assert row["psnr"] == pytest.approx(psnr(q(out[i]), q(gt[i])), abs=1e-12)
        assert row["ssim"] == pytest.approx(ssim(q(out[i]), q(gt[i])), abs=1e-12)
        assert row["psnr_in"] == pytest.approx(psnr(q(lq[i]), q(gt[i])), abs=1e-12)
        assert row["loe"] >= 0
    assert suite.score_batch(out, None, lq)[0]["psnr"] is None  # no GT: full-reference metrics are not made up


@NEEDS_PYIQA
def test_rgb_fidelity_agrees_with_pyiqa_weight_free_psnr_and_ssim():
    """pyiqa's own (weight-free) PSNR and SSIM on RGB as an independent reference implementation."""
    import pyiqa

    out, gt, lq = _batch(size=64, seed=1)
    out, gt = quantize(out), quantize(gt)
    rows = MetricSuite(["psnr_rgb", "ssim_rgb"], "unused").score_batch(out, gt, lq)
    ref_psnr = pyiqa.create_metric("psnr", device="cpu")(out, gt).flatten().tolist()
    ref_ssim = pyiqa.create_metric("ssimc", device="cpu")(out, gt).flatten().tolist()
    for row, p, s in zip(rows, ref_psnr, ref_ssim):
        assert row["psnr_rgb"] == pytest.approx(p, abs=1e-4)
        assert row["ssim_rgb"] == pytest.approx(s, abs=1e-5)


def test_unknown_metric_names_are_rejected():
    with pytest.raises(ValueError, match="unknown metric"):
        MetricSuite(["psnr", "psnr_y"], "unused")
