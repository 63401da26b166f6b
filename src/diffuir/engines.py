"""Inference engines for the DiffUIR U-Net: one function, (x_t ⊕ I_in, ᾱ_t·T) → Î_res, run by different backends.

Every engine is a callable with the signature of :meth:`DiffUIRUNet.forward`, so the released 3-step sampler
(:meth:`ResidualDiffusion.sample`, DiffUIR Algorithm 2) runs unchanged around it. All start from the same
inference copy of the network, :func:`fold_weight_standardization`: at inference the weight-standardised
kernel w' = (w − mean)/√(var + ε) of every 3×3 convolution is a constant, so it is computed once and the
convolution becomes a plain one (the state-dict key names of the trained network are untouched; training keeps
:class:`~src.diffuir.blocks.WeightStandardizedConv2d`). The ONNX export then swaps GroupNorm, the linear
attention and the upsampling for their :mod:`~src.diffuir.inference_forms` (same function), which removes the
layout conversions that took 38% of OpenVINO's time and 20 of every 36 multiply-adds of the upsampling.

========================  =============================================================  =====================
engine                    what runs the network                                           numerics
========================  =============================================================  =====================
``eager``                 PyTorch, the folded copy                                        fp32 (reference)
``compile``               ``torch.compile`` (inductor) of the folded copy                 fp32
``onnx``                  the ONNX export run by onnxruntime (CPU)                        fp32
``openvino``              the same ONNX graph compiled by OpenVINO's CPU plugin (f32)     fp32
``openvino-bf16``         OpenVINO with bfloat16 inference precision (AVX-512 BF16/AMX)   bf16: report PSNR
========================  =============================================================  =====================

``auto`` picks the fastest exact (fp32) engine that is installed and runs on the device, in the order measured
by ``benchmarks/engines.py`` on an idle CPU (``experiments/bench/engines_256.md``, ``engines_512.md``: openvino,
then onnx); on CUDA it is ``eager``. onnxruntime and OpenVINO are the optional extra ``pip install -e ".[fast]"``.
"""

from __future__ import annotations

import abc
import copy
import importlib.util
import io
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from src.diffuir.blocks import WeightStandardizedConv2d
from src.diffuir.inference_forms import to_inference_forms

ENGINES = ("eager", "compile", "onnx", "openvino", "openvino-bf16")
EXACT_ENGINES = ("eager", "compile", "onnx", "openvino")  # fp32: max abs difference to eager ≤ 1e-4 on [0, 1]
# fastest first, as measured on an idle CPU (experiments/bench/engines_256.md, engines_512.md)
AUTO_ORDER = ("openvino", "onnx", "eager")
_PACKAGE = {"onnx": "onnxruntime", "openvino": "openvino", "openvino-bf16": "openvino"}
ONNX_OPSET = 17


# ------------------------------------------------------------------------------------------------ the network
def fold_weight_standardization(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` (eval mode, no gradients) whose weight-standardised convolutions are plain
    :class:`nn.Conv2d` holding the standardised kernel; the original network is not modified."""
    folded = copy.deepcopy(net).eval().requires_grad_(False)
    for parent in list(folded.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, WeightStandardizedConv2d):
                conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                 child.padding, child.dilation, child.groups, child.bias is not None,
                                 child.padding_mode, device=child.weight.device, dtype=child.weight.dtype)
                with torch.no_grad():
                    conv.weight.copy_(child.standardized_weight())
                    if child.bias is not None:
                        conv.bias.copy_(child.bias)
                setattr(parent, name, conv.requires_grad_(False))
    return folded


def available(name: str) -> bool:
    """Whether engine ``name``'s backend is installed."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}: expected one of {', '.join(ENGINES)} or auto")
    package = _PACKAGE.get(name)
    return package is None or importlib.util.find_spec(package) is not None


def resolve(name: str, device: torch.device | str = "cpu") -> str:
    """``auto`` → the fastest exact engine installed for ``device``; any other name is checked and returned."""
    device = torch.device(device)
    if name == "auto":
        if device.type != "cpu":
            return "eager"
        return next(n for n in AUTO_ORDER if available(n))
    if not available(name):
        raise ValueError(f"engine {name!r} needs the package {_PACKAGE[name]!r}: pip install -e \".[fast]\"")
    if name in _PACKAGE and device.type != "cpu":
        raise ValueError(f"engine {name!r} runs on the CPU only (device {device}); use eager or compile")
    return name


# ------------------------------------------------------------------------------------------------ ONNX
def export_onnx(net: nn.Module, path: str | Path | io.BytesIO | None = None, opset: int = ONNX_OPSET,
                example_side: int | None = None, inference_forms: bool = True) -> bytes | Path:
    """Export ``net`` (a :class:`DiffUIRUNet`: weight standardisation folded; GroupNorm, linear attention and
    upsampling in their :mod:`~src.diffuir.inference_forms` unless ``inference_forms=False``) to ONNX with
    dynamic batch, height and width. Inputs ``x`` (B×C_in×H×W, H and W multiples of ``pad_multiple``: the graph
    does not pad) and ``t`` (B, the time input ᾱ_t·T); output ``res`` (B×3×H×W). Returns ``path``, or the
    model's bytes when ``path`` is None. Needs the package ``onnx`` (extra ``fast``)."""
    if importlib.util.find_spec("onnx") is None:
        raise ValueError("ONNX export needs the package 'onnx': pip install -e \".[fast]\"")
    import onnx

    folded = fold_weight_standardization(net).cpu().float()
    folded = to_inference_forms(folded) if inference_forms else folded
    side = example_side or 4 * folded.pad_multiple
    x = torch.zeros(1, folded.in_channels, side, side)
    t = torch.full((1,), 500.0)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the shape checks, constant for padded inputs
        torch.onnx.export(folded, (x, t), buffer, input_names=["x", "t"], output_names=["res"], opset_version=opset,
                          dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}, "t": {0: "batch"},
                                        "res": {0: "batch", 2: "height", 3: "width"}},
                          do_constant_folding=True, dynamo=False)
    model = _without_initializer_identities(onnx.load_from_string(buffer.getvalue()))
    if path is None:
        return model.SerializeToString()
    _set_metadata(model, {"pad_multiple": str(folded.pad_multiple), "in_channels": str(folded.in_channels),
                          "producer": "uir-suite src.diffuir.engines.export_onnx (DiffUIRUNet)"})
    if isinstance(path, io.BytesIO):
        path.write(model.SerializeToString())
        return path
    onnx.save(model, str(path))
    return Path(path)


def _without_initializer_identities(model):
    """Drop the Identity nodes the exporter puts on de-duplicated initializers (equal GroupNorm affines, …):
    onnxruntime's optimiser rejects some of them ("Node input … is not a graph input"); consumers read the
    initializer itself."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers}
    outputs = {o.name for o in graph.output}
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias
                                          and n.output[0] not in outputs)]
    for node in keep:
        for i, name in enumerate(node.input):
            if name in alias and name not in outputs:
                node.input[i] = alias[name]
    del graph.node[:]
    graph.node.extend(keep)
    return model


def _set_metadata(model, props: dict[str, str]) -> None:
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _add_metadata(path: Path, props: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    _set_metadata(model, props)
    onnx.save(model, str(path))


# ------------------------------------------------------------------------------------------------ engines
class Engine(abc.ABC):
    """Callable ``engine(x, time) → residual`` with :meth:`DiffUIRUNet.forward`'s contract (any H×W: inputs are
    reflect-padded to the network's multiple and cropped back, as the network itself does)."""

    name = "?"
    exact = True

    def __init__(self, net: nn.Module):
        self.pad = net.pad
        self.in_channels = net.in_channels

    @abc.abstractmethod
    def run(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """The backend's forward pass on padded, contiguous float32 inputs."""

    def __call__(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got tensor of shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        out = self.run(self.pad(x.float()).contiguous(), time.float().reshape(-1).expand(x.shape[0]).contiguous())
        return out[..., :h, :w].to(x.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, exact={self.exact})"


class EagerEngine(Engine):
    """PyTorch on the folded copy (any device)."""

    name = "eager"

    def __init__(self, net: nn.Module):
        super().__init__(net)
        self.net = fold_weight_standardization(net)

    def run(self, x, time):
        with torch.inference_mode():
            return self.net(x, time)


class CompileEngine(EagerEngine):
    """``torch.compile`` of the folded copy (compiles on the first call of each input shape)."""

    name = "compile"

    def __init__(self, net: nn.Module, **compile_kwargs):
        super().__init__(net)
        self.compiled = torch.compile(self.net, **compile_kwargs)

    def run(self, x, time):
        with torch.inference_mode():
            return self.compiled(x, time)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)


class OnnxRuntimeEngine(Engine):
    """The ONNX export run by onnxruntime's CPU execution provider (all graph optimisations)."""

    name = "onnx"

    def __init__(self, net: nn.Module, threads: int | None = None, model: bytes | None = None):
        import onnxruntime as ort

        super().__init__(net)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model or export_onnx(net), options, providers=["CPUExecutionProvider"])

    def run(self, x, time):
        return torch.from_numpy(self.session.run(None, {"x": _numpy(x), "t": _numpy(time)})[0])


class OpenVinoEngine(Engine):
    """The ONNX export compiled by OpenVINO's CPU plugin for each input shape met (latency hint, ``threads``
    inference threads, the ``max_shapes`` most recent compiled shapes kept)."""

    name = "openvino"
    precision = "f32"

    def __init__(self, net: nn.Module, threads: int | None = None, model: bytes | None = None, max_shapes: int = 4):
        import openvino as ov

        super().__init__(net)
        self.exact = self.precision == "f32"
        self.core = ov.Core()
        if self.precision == "bf16" and "BF16" not in self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ValueError("engine openvino-bf16: this CPU has no bfloat16 support (AVX-512 BF16 or AMX) in "
                               "OpenVINO; use openvino or onnx")
        with tempfile.TemporaryDirectory() as tmp:  # read_model takes a file for ONNX
            path = Path(tmp) / "diffuir.onnx"
            path.write_bytes(model or export_onnx(net))
            self.model = self.core.read_model(str(path))
        self.config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
                       "INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        self.max_shapes = max_shapes
        self.compiled: OrderedDict[tuple, object] = OrderedDict()

    def request(self, shape: tuple[int, ...]):
        """The infer request of the model compiled for ``shape`` (static shapes run faster than dynamic ones)."""
        if shape in self.compiled:
            self.compiled.move_to_end(shape)
            return self.compiled[shape]
        model = self.model.clone()
        model.reshape({"x": list(shape), "t": [shape[0]]})
        self.compiled[shape] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        while len(self.compiled) > self.max_shapes:
            self.compiled.popitem(last=False)
        return self.compiled[shape]

    def run(self, x, time):
        out = self.request(tuple(x.shape)).infer({"x": _numpy(x), "t": _numpy(time)})
        return torch.from_numpy(np.array(out[0], dtype=np.float32))


class OpenVinoBf16Engine(OpenVinoEngine):
    """OpenVINO with bfloat16 inference precision: not exact, its PSNR to fp32 is reported by the benchmark."""

    name = "openvino-bf16"
    precision = "bf16"


_CLASSES: dict[str, Callable[..., Engine]] = {"eager": EagerEngine, "compile": CompileEngine,
                                               "onnx": OnnxRuntimeEngine, "openvino": OpenVinoEngine,
                                               "openvino-bf16": OpenVinoBf16Engine}


def build_engine(net: nn.Module, name: str = "auto", device: torch.device | str = "cpu", **kwargs) -> Engine:
    """Engine ``name`` (or ``auto``) running ``net`` (a :class:`DiffUIRUNet`, left unchanged) on ``device``."""
    return _CLASSES[resolve(name, device)](net, **kwargs)


def use_engine(model: nn.Module, name: str = "auto", device: torch.device | str | None = None,
               precision: str = "32") -> str:
    """Make ``model.restore`` (a :class:`DiffUIRModule`) run its sampler on engine ``name``; returns the engine used.

    ``precision`` is the autocast precision the caller runs under (``src.restore --precision``): the ONNX and
    OpenVINO engines compute in their own precision, so with ``bf16``/``16`` ``auto`` means ``eager`` and they are
    refused. Models without a DiffUIR network (Diff-Restorer) accept ``auto`` and ``eager`` (they run in PyTorch
    as they are: ``"pytorch"`` is returned) and reject the others."""
    if name != "auto" and name not in ENGINES:
        raise ValueError(f"--engine {name}: expected auto or one of {', '.join(ENGINES)}")
    if not hasattr(model, "inference_net") or not hasattr(model, "eval_net"):
        if name in ("auto", "eager"):
            return "pytorch"
        raise ValueError(f"--engine {name}: only DiffUIR models have inference engines ({type(model).__name__} "
                         "runs in PyTorch); use --engine auto or eager")
    if precision != "32":
        if name in _PACKAGE:
            raise ValueError(f"--engine {name} computes in its own precision: use it with --precision 32 (or "
                             f"--engine eager with --precision {precision})")
        name = "eager" if name == "auto" else name
    device = device if device is not None else next(model.parameters()).device
    model.inference_net = build_engine(model.eval_net, name, device)
    return model.inference_net.name


def export_onnx_checkpoint(model: nn.Module, source: Path, out: Path, **_) -> list[Path]:
    """``python -m src.export --format onnx``: ``out/diffuir.onnx``, the restoring network (the EMA copy when the
    checkpoint has one) of a DiffUIR model, weight standardisation folded; the metadata names the input multiple
    and the sampler settings (the 3-step loop stays outside the graph, see :class:`ResidualDiffusion`)."""
    import json

    net, diffusion = getattr(model, "eval_net", None), getattr(model, "diffusion", None)
    if not isinstance(net, nn.Module) or not hasattr(net, "pad_multiple") or diffusion is None:
        raise ValueError(f"--format onnx: only DiffUIR models export to ONNX, {source} holds a "
                         f"{type(model).__name__}; use --format safetensors")
    if importlib.util.find_spec("onnx") is None:
        raise ValueError("--format onnx needs the package 'onnx': pip install -e \".[fast]\"")
    out.mkdir(parents=True, exist_ok=True)
    target, partial = out / "diffuir.onnx", out / "diffuir.onnx.partial"
    export_onnx(net, partial)
    sampler = {k: getattr(diffusion, k) for k in ("timesteps", "explicit_condition", "shared_distribution",
                                                  "implicit_condition", "sampling_steps", "start_noise_std",
                                                  "clip_residual")}
    _add_metadata(partial, {"sampler": json.dumps(sampler), "source_checkpoint": str(Path(source).resolve())})
    partial.replace(target)
    return [target]
