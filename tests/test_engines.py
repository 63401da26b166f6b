"""Inference engines (src/diffuir/engines.py): same sampler output as PyTorch, the ONNX export checked against the
network, the trained network untouched."""

import importlib.util

import numpy as np
import pytest
import torch

from src.diffuir import engines
from src.diffuir.blocks import WeightStandardizedConv2d
from src.diffuir.diffusion import ResidualDiffusion
from src.diffuir.unet import DiffUIRUNet

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_OV = importlib.util.find_spec("openvino") is not None
needs = {"onnx": HAS_ORT, "openvino": HAS_OV, "openvino-bf16": HAS_OV}


def _net(seed: int = 0) -> DiffUIRUNet:
    torch.manual_seed(seed)
    net = DiffUIRUNet.from_size("T").eval()
    with torch.no_grad():  # non-trivial gains and biases, so that a wrong fold or norm would show
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_fold_weight_standardization_is_exact_and_leaves_the_network_alone():
    net = _net()
    keys = list(net.state_dict())
    folded = engines.fold_weight_standardization(net)
    assert not any(isinstance(m, WeightStandardizedConv2d) for m in folded.modules())
    assert sum(isinstance(m, WeightStandardizedConv2d) for m in net.modules()) == 38  # 19 ResBlocks × 2
    assert list(net.state_dict()) == keys and list(folded.state_dict()) == keys  # names unchanged (converter)
    x, t = torch.rand(1, 6, 32, 48) * 2 - 1, torch.full((1,), 731.0)
    with torch.no_grad():
        torch.testing.assert_close(folded(x, t), net(x, t), atol=1e-5, rtol=1e-5)
    net.train()  # training still standardises on the fly, with gradients to the raw kernel
    net(x, t).sum().backward()
    assert net.downs[0].res1.block1.conv.weight.grad is not None


@pytest.mark.parametrize("size,shift_free", [("T", True), ("S", True), ("T", False)])
def test_inference_forms_compute_the_trained_blocks(size, shift_free, monkeypatch):
    """GroupNorm from moments, linear attention on tokens (the shift-free exp form where |q|, |k| are bounded, else
    softmax nodes), upsampling as a transposed convolution (src/diffuir/inference_forms.py): same output."""
    from src.diffuir.attention import LinearAttention
    from src.diffuir.blocks import Upsample
    from src.diffuir.inference_forms import (
        GroupNormStats,
        LinearAttentionTokens,
        UpsampleTransposed,
        to_inference_forms,
    )

    torch.manual_seed(5)
    net = DiffUIRUNet.from_size(size).eval()
    with torch.no_grad():  # gains, biases and kernels away from their initial values
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    folded = engines.fold_weight_standardization(net)
    if not shift_free:
        monkeypatch.setattr(LinearAttentionTokens, "EXP_BOUND", 0.0)
    forms = to_inference_forms(engines.fold_weight_standardization(net))
    assert sum(isinstance(m, GroupNormStats) for m in forms.modules()) == 38
    attention = [m for m in forms.modules() if isinstance(m, LinearAttentionTokens)]
    assert len(attention) == 8 and all(m.shift_free == shift_free for m in attention)
    assert sum(isinstance(m, UpsampleTransposed) for m in forms.modules()) == 3
    assert not any(isinstance(m, (torch.nn.GroupNorm, LinearAttention, Upsample)) for m in forms.modules())
    x, t = torch.rand(2, 6, 48, 80) * 2 - 1, torch.tensor([999.0, 3.0])  # batch 2, non-square
    with torch.no_grad():
        ref, out = folded(x, t), forms(x, t)
    scale = ref.abs().max().item()
    assert scale > 0.1
    assert (out - ref).abs().max().item() <= 1e-5 * scale  # fp32 rounding (measured 1e-6 × scale)


@pytest.mark.parametrize("name", [e for e in engines.EXACT_ENGINES if e != "compile"])
def test_exact_engines_reproduce_the_pytorch_sampler(name):
    if not needs.get(name, True):
        pytest.skip(f"{name}: backend not installed (pip install -e '.[fast]')")
    net, diffusion = _net(1), ResidualDiffusion()
    x = torch.rand(2, 3, 40, 52) * 2 - 1  # odd size: the engine pads to 48×64 and crops back, batch 2
    noise = torch.randn_like(x)
    ref = diffusion.sample(net, x, noise=noise)
    engine = engines.build_engine(net, name)
    assert engine.name == name and engine.exact
    out = diffusion.sample(engine, x, noise=noise)
    assert out.shape == ref.shape
    assert ((out - ref).abs().max() / 2).item() <= 1e-4  # [0, 1] scale: the bound for fp32 paths
    assert ((out - ref).abs().max() / 2).item() > 0 or name == "eager"  # another backend really ran


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``python -m src.export --format onnx``'s exporter on a DiffUIR-T module (EMA copy = what restores)."""
    from src.diffuir.module import DiffUIRModule

    module = DiffUIRModule(_net(2), ResidualDiffusion(), optimizer=torch.optim.Adam, ema={}).eval()
    with torch.no_grad():  # the EMA copy differs from the raw network: the export must hold the EMA one
        for p in module.ema.averaged.parameters():
            p.add_(0.01)
    out = tmp_path_factory.mktemp("onnx")
    (path,) = engines.export_onnx_checkpoint(module, out / "last.ckpt", out / "export")
    return module, path


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
@pytest.mark.parametrize("side", [32, 64])
def test_exported_onnx_matches_the_pytorch_model(exported, side):
    import json

    import onnx
    import onnxruntime as ort

    module, path = exported
    assert path.name == "diffuir.onnx" and not list(path.parent.glob("*.partial"))
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["pad_multiple"] == "16" and meta["in_channels"] == "6"
    assert json.loads(meta["sampler"])["sampling_steps"] == 3
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, t = torch.rand(2, 6, side, side) * 2 - 1, torch.tensor([999.0, 12.5])
    out = session.run(None, {"x": x.numpy(), "t": t.numpy()})[0]
    with torch.no_grad():
        ref, raw = module.eval_net(x, t).numpy(), module.net(x, t).numpy()
    assert out.shape == (2, 3, side, side)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    assert np.abs(out - raw).max() > 1e-3  # the EMA weights, not the raw ones


def test_onnx_is_an_export_format_and_only_for_diffuir(tmp_path):
    from src.export import EXPORTERS

    assert EXPORTERS["onnx"] is engines.export_onnx_checkpoint
    with pytest.raises(ValueError, match="only DiffUIR models export to ONNX"):
        engines.export_onnx_checkpoint(torch.nn.Linear(2, 2), tmp_path / "x.ckpt", tmp_path / "out")


@pytest.mark.skipif(not HAS_OV, reason="openvino not installed")
def test_bf16_engine_is_marked_inexact_and_close():
    net, diffusion = _net(3), ResidualDiffusion()
    try:
        engine = engines.build_engine(net, "openvino-bf16")
    except ValueError as e:  # a CPU without bfloat16: a clear refusal, not a silent fp32 run
        assert "bfloat16" in str(e)
        return
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    noise = torch.randn_like(x)
    ref, out = diffusion.sample(net, x, noise=noise), diffusion.sample(engine, x, noise=noise)
    mse = (((out - ref) / 2) ** 2).mean().item()
    assert not engine.exact and 0 < mse and 10 * np.log10(1 / mse) > 25


def test_resolve_and_bad_names():
    assert engines.resolve("auto", "cuda") == "eager"
    assert engines.resolve("auto") in engines.EXACT_ENGINES and engines.available(engines.resolve("auto"))
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'"):
        engines.resolve("tensorrt")
    if HAS_ORT:
        with pytest.raises(ValueError, match="CPU only"):
            engines.resolve("onnx", "cuda")


def test_use_engine_on_the_lightning_module():
    from src.diffuir.module import DiffUIRModule

    net = _net(4)
    module = DiffUIRModule(net, ResidualDiffusion(), optimizer=torch.optim.Adam, ema=None).eval()
    keys = list(module.state_dict())
    lq, noise = torch.rand(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    ref = module.restore(lq, noise=noise)
    name = engines.use_engine(module, "auto")
    assert name == engines.resolve("auto") and module.inference_net.name == name
    torch.testing.assert_close(module.restore(lq, noise=noise), ref, atol=1e-4, rtol=0)
    assert list(module.state_dict()) == keys  # the engine is not a submodule: checkpoints unchanged

    class NotDiffUIR(torch.nn.Module):
        pass

    assert engines.use_engine(NotDiffUIR(), "auto") == "pytorch"
    with pytest.raises(ValueError, match="only DiffUIR models"):
        engines.use_engine(NotDiffUIR(), "onnx")
    assert engines.use_engine(module, "auto", precision="16") == "eager"  # autocast needs PyTorch
    if HAS_ORT:
        with pytest.raises(ValueError, match="--precision 32"):
            engines.use_engine(module, "onnx", precision="bf16")


def test_restore_cli_engine_flag(tmp_path, capsys):
    """``src.restore --engine``: the engine named runs, gives the PyTorch output, and bad combinations exit 2."""
    from PIL import Image

    from src.restore import main
    from src.train import train
    from tests.conftest import compose_train

    train(compose_train(["experiment=diffuir_t", "debug=default", "model.net.dim=8", "num_threads=1", "trainer=cpu",
                         "test=false", "logger=csv", "callbacks.progress_bar.refresh_rate=0"], tmp_path / "run"))
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    fast = ["--threads", "1", "--no-progress"]
    names = ["eager", *(n for n in ("onnx", "openvino") if needs[n])]
    for name in names:
        assert main([str(tmp_path / "a.png"), "--ckpt", ckpt, "--out", str(tmp_path / name), "--engine", name,
                     *fast]) == 0
        assert f"engine: {name}" in capsys.readouterr().out
    ref = np.asarray(Image.open(tmp_path / "eager" / "a.png"), np.float64)
    for name in names[1:]:  # ≤ 1e-4 apart before quantisation: at most one 8-bit level, almost never
        out = np.asarray(Image.open(tmp_path / name / "a.png"), np.float64)
        assert out.shape == ref.shape == (20, 28, 3) and np.abs(out - ref).max() <= 1
        assert np.mean(out != ref) < 0.01
    args = [str(tmp_path / "a.png"), "--ckpt", ckpt, "--out", str(tmp_path / "x"), *fast]
    with pytest.raises(SystemExit) as e:  # argparse: an engine that does not exist
        main([*args, "--engine", "tensorrt"])
    assert e.value.code == 2
    if HAS_ORT:
        assert main([*args, "--engine", "onnx", "--precision", "bf16"]) == 2
        assert "--precision 32" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_OV, reason="openvino not installed")
def test_openvino_runs_a_batch_as_parallel_single_image_requests_compiled_once():
    """A batch of tiles: one compilation of the single-image shape serves every batch size (the last, smaller
    batch and a single image included), and each image's output is the eager network's."""
    net = _net(5)
    x, t = torch.randn(3, 6, 32, 40), torch.full((3,), 400.0)
    ref = engines.build_engine(net, "eager")(x, t)
    ov = engines.build_engine(net, "openvino", threads=2)
    torch.testing.assert_close(ov(x, t), ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(ov(x[:2], t[:2]), ref[:2], atol=1e-4, rtol=0)
    torch.testing.assert_close(ov(x[2:], t[2:]), ref[2:], atol=1e-4, rtol=0)
    assert ov.compilations == 1
    one = engines.build_engine(net, "openvino", threads=2, parallel_batch=False)  # the batch shape compiled whole
    torch.testing.assert_close(one(x, t), ref, atol=1e-4, rtol=0)
    assert one.compilations == 1


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(engines, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert not engines.native_bf16()
    monkeypatch.setattr(engines, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert engines.native_bf16()
    monkeypatch.setattr(engines, "cpu_flags", lambda: {"amx_bf16", "amx_tile"})
    assert engines.native_bf16()


def test_check_image_is_a_fixed_photo_crop():
    a, b = engines.check_image(), engines.check_image()
    assert a.shape == (1, 3, engines.CHECK_SIDE, engines.CHECK_SIDE) and torch.equal(a, b)
    assert 0 <= a.min() < a.max() <= 1 and a.std() > 0.05  # a photo, not a flat field


def _module(seed: int):
    from src.diffuir.module import DiffUIRModule

    return DiffUIRModule(_net(seed), ResidualDiffusion(), optimizer=torch.optim.Adam, ema=None).eval()


def test_select_engine_precision_choices(monkeypatch):
    """--precision 32: the exact engine; 16: PyTorch autocast; auto without native bf16: fp32, saying why; an
    fp32 engine with bf16 and the bf16 engine with 32 are refused."""
    module = _module(6)
    exact = engines.select_engine(module, "auto", "cpu", "32")
    assert exact.engine == engines.resolve("auto") and exact.precision == "32" and module.inference_net.exact
    half = engines.select_engine(module, "auto", "cpu", "16")
    assert (half.engine, half.precision) == ("eager", "16")
    monkeypatch.setattr(engines, "native_bf16", lambda: False)
    auto = engines.select_engine(module, "auto", "cpu", "auto")
    assert auto.precision == "32" and "no native bf16" in auto.note and auto.psnr_db is None
    assert auto.describe().startswith(f"engine: {auto.engine}, precision 32 (--precision auto")
    assert engines.select_engine(module, "eager", "cpu", "auto").precision == "32"
    with pytest.raises(ValueError, match="--precision 64: expected auto, 32, bf16 or 16"):
        engines.select_engine(module, "auto", "cpu", "64")
    if HAS_OV:
        with pytest.raises(ValueError, match="computes in bf16"):
            engines.select_engine(module, "openvino-bf16", "cpu", "32")
        with pytest.raises(ValueError, match="computes in fp32"):
            engines.select_engine(module, "openvino", "cpu", "bf16")


@pytest.mark.skipif(not HAS_OV, reason="openvino not installed")
def test_precision_auto_takes_bf16_only_above_the_psnr_bar(monkeypatch):
    """On a native-bf16 CPU, auto runs the check: bf16 at ≥ the bar (its PSNR said), fp32 below it; the PSNR is
    the sampler's on the check image, bf16 engine against fp32 engine."""
    monkeypatch.setattr(engines, "native_bf16", lambda: True)
    if not engines._openvino_bf16_ok():
        pytest.skip("OpenVINO has no bf16 on this CPU")
    module = _module(7)
    taken = engines.select_engine(module, "auto", "cpu", "auto", threads=1, min_psnr=0.0)
    assert (taken.engine, taken.precision) == ("openvino-bf16", "bf16") and not module.inference_net.exact
    assert 20 < taken.psnr_db < 90 and f"{taken.psnr_db:.1f} dB from fp32" in taken.note
    fp32 = engines.build_engine(module.eval_net, "openvino", threads=1)
    assert engines.sampler_psnr(module.diffusion, fp32, module.inference_net) == pytest.approx(taken.psnr_db, abs=0.05)
    refused = engines.select_engine(module, "auto", "cpu", "auto", threads=1, min_psnr=200.0)
    assert (refused.engine, refused.precision) == ("openvino", "32") and module.inference_net.exact
    assert "< 200" in refused.note
    explicit = engines.select_engine(module, "auto", "cpu", "bf16", threads=1)
    assert (explicit.engine, explicit.precision) == ("openvino-bf16", "bf16")
