"""The engine cache (src/diffuir/engine_cache.py): keyed by the weights, exports used only when their digest holds,
the precision check remembered per weights and CPU, OpenVINO's compiled models kept, an unwritable folder
reported and skipped."""

import importlib.util
import json
import warnings

import pytest
import torch

from src.diffuir import engine_cache, engines
from src.diffuir.diffusion import ResidualDiffusion
from src.diffuir.unet import DiffUIRUNet

HAS_OV = importlib.util.find_spec("openvino") is not None
HAS_ONNX = importlib.util.find_spec("onnx") is not None


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UIR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _net(seed: int = 0, dim: int = 8) -> DiffUIRUNet:
    torch.manual_seed(seed)
    return DiffUIRUNet(dim=dim, dim_mults=(1, 1)).eval()


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UIR_CACHE_DIR", "off")
    assert engine_cache.cache_dir() is None
    monkeypatch.setenv("UIR_CACHE_DIR", str(tmp_path))
    assert engine_cache.cache_dir() == tmp_path
    monkeypatch.delenv("UIR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert engine_cache.cache_dir() == tmp_path / "xdg" / "uir-suite"


def test_network_key_is_the_weights():
    a, b = _net(0), _net(0)
    assert engine_cache.network_key(a) == engine_cache.network_key(b)
    assert engine_cache.network_key(a, "x") != engine_cache.network_key(a, "y")
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6  # one weight, one ulp-sized change
    assert engine_cache.network_key(a) != engine_cache.network_key(b)
    assert engine_cache.network_key(_net(0, dim=16)) != engine_cache.network_key(a)


def test_cached_onnx_exports_once_and_refuses_a_tampered_file(cache):
    calls = []

    def export():
        calls.append(1)
        return b"graph-bytes-%d" % len(calls)

    assert engine_cache.cached_onnx("k", export) == b"graph-bytes-1"
    assert engine_cache.cached_onnx("k", export) == b"graph-bytes-1" and len(calls) == 1
    (cache / "onnx" / "k.onnx").write_bytes(b"something else")  # not what the digest beside it says
    assert engine_cache.cached_onnx("k", export) == b"graph-bytes-2" and len(calls) == 2
    assert engine_cache.cached_onnx("k", export) == b"graph-bytes-2" and len(calls) == 2


def test_checks_are_numbers_only_and_a_broken_file_is_ignored(cache):
    assert engine_cache.cached_check("a") is None
    engine_cache.store_check("a", 51.25)
    engine_cache.store_check("b", float("inf"))
    assert engine_cache.cached_check("a") == 51.25 and engine_cache.cached_check("b") == 1e9
    (cache / "precision_checks.json").write_text(json.dumps({"a": "__import__('os')", "b": True, "c": [1]}))
    assert [engine_cache.cached_check(k) for k in "abc"] == [None, None, None]
    (cache / "precision_checks.json").write_text("{not json")
    assert engine_cache.cached_check("a") is None
    engine_cache.store_check("a", 47.0)  # rewritten whole
    assert engine_cache.cached_check("a") == 47.0


def test_an_unwritable_cache_is_reported_once_and_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("UIR_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(engine_cache, "_warned", set())
    with pytest.warns(RuntimeWarning, match="uir-suite cache: cannot write .*going on without it"):
        assert engine_cache.cached_onnx("k", lambda: b"x") == b"x"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same problem is not repeated
        assert engine_cache.cached_onnx("k", lambda: b"y") == b"y"


@pytest.mark.skipif(not HAS_ONNX, reason="onnx not installed")
def test_onnx_bytes_reads_the_cache_for_the_same_weights(cache, monkeypatch):
    net = _net(1)
    first = engines.onnx_bytes(net)
    monkeypatch.setattr(engines, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    assert engines.onnx_bytes(_net(1)) == first  # same weights, another module object
    monkeypatch.undo()
    monkeypatch.setenv("UIR_CACHE_DIR", str(cache))
    assert engines.onnx_bytes(_net(2)) != first  # other weights: exported anew
    assert len(list((cache / "onnx").glob("*.onnx"))) == 2


@pytest.mark.skipif(not HAS_OV, reason="openvino not installed")
def test_precision_check_is_remembered_per_weights_and_openvino_keeps_compiled_models(cache, monkeypatch):
    from src.diffuir.module import DiffUIRModule

    monkeypatch.setattr(engines, "native_bf16", lambda: True)
    if not engines._openvino_bf16_ok():
        pytest.skip("OpenVINO has no bf16 on this CPU")

    def module(seed):
        return DiffUIRModule(_net(seed), ResidualDiffusion(), optimizer=torch.optim.Adam, ema=None).eval()

    first = engines.select_engine(module(3), "auto", "cpu", "auto", threads=1, min_psnr=0.0)
    assert first.precision == "bf16" and "remembered" not in first.note
    assert any((cache / "openvino").iterdir())  # OpenVINO wrote its compiled model
    ran = []
    real = engines.sampler_psnr
    monkeypatch.setattr(engines, "sampler_psnr", lambda *a, **k: ran.append(1) or real(*a, **k))
    again = engines.select_engine(module(3), "auto", "cpu", "auto", threads=1, min_psnr=0.0)
    assert ran == [] and again.psnr_db == pytest.approx(first.psnr_db)
    assert "remembered from an earlier run" in again.note
    assert (again.engine, again.precision) == ("openvino-bf16", "bf16")
    refused = engines.select_engine(module(3), "auto", "cpu", "auto", threads=1, min_psnr=200.0)  # same PSNR, new bar
    assert ran == [] and refused.precision == "32" and "< 200" in refused.note
    other = engines.select_engine(module(4), "auto", "cpu", "auto", threads=1, min_psnr=0.0)  # other weights: checked
    assert ran == [1] and "remembered" not in other.note
    x, t = torch.rand(1, 6, 32, 32), torch.full((1,), 300.0)
    m = module(3)
    engines.select_engine(m, "auto", "cpu", "auto", threads=1, min_psnr=0.0)  # export and compiled model cached
    from_cache = m.inference_net(x, t)
    monkeypatch.setenv("UIR_CACHE_DIR", "off")
    fresh = engines.build_engine(module(3).eval_net, "openvino-bf16", threads=1)(x, t)
    assert torch.allclose(from_cache, fresh, atol=1e-6)
