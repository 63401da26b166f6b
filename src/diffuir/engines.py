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

Precision (:func:`select_engine`, ``src.restore --precision``): ``32`` is the exact fp32 engine above; ``bf16`` on
the CPU is ``openvino-bf16`` (PyTorch autocast where OpenVINO is missing); ``auto`` on a CPU that computes bfloat16
natively (AVX-512 BF16 or AMX, :func:`native_bf16`) is ``openvino-bf16`` when its sampler output on a fixed check
image (:func:`check_image`) is at least :data:`BF16_MIN_PSNR` dB from the fp32 engine's, else fp32.

Batches: OpenVINO runs the images of a batch (the tiles of a photo, ``src.restore --tile-batch``) as parallel
single-image requests on ``threads`` one-thread streams of one model compiled per image shape, so a batch of any
size (the last, smaller one included) reuses that one compilation.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import importlib.util
import io
import math
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from src.diffuir import engine_cache
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


def onnx_bytes(net: nn.Module) -> bytes:
    """:func:`export_onnx` of ``net`` as bytes, read from :mod:`~src.diffuir.engine_cache` when these weights were
    exported before (the export takes seconds; the cache is off with ``UIR_CACHE_DIR=off``)."""
    return engine_cache.cached_onnx(engine_cache.network_key(net, "onnx", ONNX_OPSET), lambda: export_onnx(net))


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
    batch = 1  # images per call that run best (src.inference.Restorer batches tiles by it)

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
        self.session = ort.InferenceSession(model or onnx_bytes(net), options, providers=["CPUExecutionProvider"])

    def run(self, x, time):
        return torch.from_numpy(self.session.run(None, {"x": _numpy(x), "t": _numpy(time)})[0])


class OpenVinoEngine(Engine):
    """The ONNX export compiled by OpenVINO's CPU plugin for each input shape met (static shapes run faster than
    dynamic ones; the ``max_shapes`` most recent compiled shapes kept).

    Batch 1: one request, latency hint, ``threads`` threads. A batch of N > 1 with ``threads`` > 1 and
    ``parallel_batch``: the N images run as single-image requests on ``threads`` one-thread streams of the model
    compiled once for the single-image shape (small convolutions scale better across images than across threads,
    and a last batch of another size, one image included, needs no new compilation); without ``parallel_batch``
    the N-image shape is compiled as one request."""

    name = "openvino"
    precision = "f32"

    def __init__(self, net: nn.Module, threads: int | None = None, model: bytes | None = None, max_shapes: int = 4,
                 parallel_batch: bool = True):
        import openvino as ov

        super().__init__(net)
        self.exact = self.precision == "f32"
        self.core = ov.Core()
        if self.precision == "bf16" and "BF16" not in self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ValueError("engine openvino-bf16: this CPU has no bfloat16 support (AVX-512 BF16 or AMX) in "
                               "OpenVINO; use openvino or onnx")
        cache = engine_cache.openvino_cache_dir()
        if cache is not None:  # compiled models kept for the next run (OpenVINO keys them by graph and settings)
            self.core.set_property({"CACHE_DIR": cache})
        with tempfile.TemporaryDirectory() as tmp:  # read_model takes a file for ONNX
            path = Path(tmp) / "diffuir.onnx"
            path.write_bytes(model or onnx_bytes(net))
            self.model = self.core.read_model(str(path))
        self.threads = threads or torch.get_num_threads()
        self.parallel_batch = parallel_batch
        self.batch = self.threads if parallel_batch else 1  # the batch that keeps every stream busy (tiles)
        self.config = {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": self.precision,
                       "PERFORMANCE_HINT": "LATENCY"}
        self.max_shapes = max_shapes
        self.compiled: OrderedDict[tuple, object] = OrderedDict()
        self.compilations = 0  # how many models were compiled (the tests check tiles reuse one)

    def _compiled(self, shape: tuple[int, ...], streams: int):
        """The model compiled for ``shape`` (one request, or an async queue of ``streams`` one-thread streams)."""
        key = (shape, streams)
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        from openvino import AsyncInferQueue

        model = self.model.clone()
        model.reshape({"x": list(shape), "t": [shape[0]]})
        if streams == 1:
            compiled = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        else:
            config = {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": self.precision,
                      "NUM_STREAMS": streams}
            compiled = AsyncInferQueue(self.core.compile_model(model, "CPU", config), streams)
        self.compilations += 1
        self.compiled[key] = compiled
        while len(self.compiled) > self.max_shapes:
            self.compiled.popitem(last=False)
        return compiled

    def request(self, shape: tuple[int, ...]):
        """The infer request of the model compiled for ``shape`` (latency hint, all threads)."""
        return self._compiled(shape, 1)

    def run(self, x, time):
        n = x.shape[0]
        single = (tuple(x.shape), 1) in self.compiled or (tuple(x.shape), self.threads) not in self.compiled
        if self.threads == 1 or not self.parallel_batch or (n == 1 and single):
            out = self.request(tuple(x.shape)).infer({"x": _numpy(x), "t": _numpy(time)})
            return torch.from_numpy(np.array(out[0], dtype=np.float32))
        queue = self._compiled((1, *x.shape[1:]), self.threads)
        xs, ts = _numpy(x), _numpy(time)
        outs: list[np.ndarray | None] = [None] * n

        def done(request, i):
            outs[i] = np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy: requests are reused

        queue.set_callback(done)
        for i in range(n):
            queue.start_async({"x": xs[i:i + 1], "t": ts[i:i + 1]}, i)
        queue.wait_all()
        return torch.from_numpy(np.concatenate(outs))


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


BF16_MIN_PSNR = 45.0  # dB of the bf16 sampler output against fp32 on the check image for --precision auto to use it
CHECK_SIDE = 128


def cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (``/proc/cpuinfo``); empty where there is no such file."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    return set()


def cpu_identity() -> str:
    """This CPU as the kernel names it (model name, family, model, stepping, flags), for keys of cached checks."""
    with contextlib.suppress(OSError):
        block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        wanted = ("model name", "cpu family", "model", "stepping", "flags", "Features", "CPU implementer", "CPU part")
        return "; ".join(line.split(":", 1)[1].strip() for line in block.splitlines()
                         if line.split(":", 1)[0].strip() in wanted and ":" in line)
    import platform

    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively: AVX-512 BF16 or AMX (``avx512_bf16`` / ``amx_bf16``)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def check_image(side: int = CHECK_SIDE) -> torch.Tensor:
    """The fixed check image of ``--precision auto``: the centre ``side``×``side`` crop of scikit-image's
    ``chelsea`` photo (a held-out image of the built-in data), 1×3×side×side in [0, 1]."""
    from src.data.builtin import center_crop, load_builtin_image

    crop = np.ascontiguousarray(center_crop(load_builtin_image("chelsea"), side))
    return torch.from_numpy(crop).permute(2, 0, 1)[None]


def sampler_psnr(diffusion, reference: Callable, candidate: Callable, side: int = CHECK_SIDE) -> float:
    """PSNR (dB, on [0, 1]) of ``candidate``'s sampler output against ``reference``'s on the check image, same start
    noise (seed 0): the whole ``diffusion.sample`` loop, as a user's restoration runs it."""
    lq = check_image(side) * 2 - 1
    noise = torch.randn(lq.shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref, out = (((diffusion.sample(net, lq, noise=noise) + 1) / 2).clamp(0, 1) for net in (reference, candidate))
    mse = float(((ref - out) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@dataclass
class EngineChoice:
    """What :func:`select_engine` installed: ``engine`` (its name, or ``pytorch``), ``precision`` (``32``, ``bf16``
    or ``16``: the numerics the restoration runs in), ``note`` (why, one line) and ``psnr_db`` (the bf16 check's
    PSNR against fp32 when it ran)."""

    engine: str
    precision: str
    note: str = ""
    psnr_db: float | None = None

    def describe(self) -> str:
        return f"engine: {self.engine}, precision {self.precision}" + (f" ({self.note})" if self.note else "")


def select_engine(model: nn.Module, name: str = "auto", device: torch.device | str | None = None,
                  precision: str = "32", threads: int | None = None, min_psnr: float | None = None) -> EngineChoice:
    """Choose and install (``model.inference_net``) the engine of a DiffUIR module for ``precision``.

    ``precision``: ``32`` — the exact fp32 engine ``name`` (auto: :data:`AUTO_ORDER`); ``bf16`` — on the CPU
    ``openvino-bf16`` for ``name`` auto (PyTorch autocast, engine ``eager``, without OpenVINO), elsewhere autocast;
    ``16`` — autocast fp16 (``eager``); ``auto`` — on a CPU with native bf16 (:func:`native_bf16`) and OpenVINO,
    ``openvino-bf16`` if its sampler output on the check image is ≥ ``min_psnr`` dB (default
    :data:`BF16_MIN_PSNR`) from the fp32 engine's
    (:func:`sampler_psnr`), else fp32; fp32 anywhere else. An explicit bf16 engine (``openvino-bf16``) goes with
    ``bf16`` or ``auto`` only. Models without a DiffUIR network (Diff-Restorer) run in PyTorch (``pytorch``) with
    ``auto``/``eager`` and ``precision`` as given (``auto`` → ``32``)."""
    if name != "auto" and name not in ENGINES:
        raise ValueError(f"--engine {name}: expected auto or one of {', '.join(ENGINES)}")
    if precision not in ("auto", "32", "bf16", "16"):
        raise ValueError(f"--precision {precision}: expected auto, 32, bf16 or 16")
    if not hasattr(model, "inference_net") or not hasattr(model, "eval_net"):
        if name in ("auto", "eager"):
            return EngineChoice("pytorch", "32" if precision == "auto" else precision)
        raise ValueError(f"--engine {name}: only DiffUIR models have inference engines ({type(model).__name__} "
                         "runs in PyTorch); use --engine auto or eager")
    device = torch.device(device if device is not None else next(model.parameters()).device)
    min_psnr = BF16_MIN_PSNR if min_psnr is None else min_psnr
    kwargs = {"threads": threads} if threads else {}

    def install(engine_name: str, precision_used: str, note: str = "", psnr_db=None, engine=None) -> EngineChoice:
        if engine is None:
            engine_name = resolve(engine_name, device)
            engine = build_engine(model.eval_net, engine_name, device, **(kwargs if engine_name in _PACKAGE else {}))
        model.inference_net = engine
        return EngineChoice(model.inference_net.name, precision_used, note, psnr_db)

    if name == "openvino-bf16":
        if precision == "32" or precision == "16":
            raise ValueError(f"--engine openvino-bf16 computes in bf16: use it with --precision bf16 or auto (or "
                             f"--engine auto with --precision {precision})")
        return install(name, "bf16", "engine named")
    if precision in ("bf16", "16"):
        if name == "auto" and precision == "bf16" and device.type == "cpu" and available("openvino") \
                and _openvino_bf16_ok():
            return install("openvino-bf16", "bf16", "--precision bf16")
        if name in _PACKAGE:
            raise ValueError(f"--engine {name} computes in fp32: use it with --precision 32 (or --engine eager "
                             f"with --precision {precision})")
        return install("eager" if name == "auto" else name, precision, "PyTorch autocast")
    if precision == "32" or name != "auto" or device.type != "cpu":
        return install(name, "32", "--precision auto: fp32 (engine named)" if precision == "auto" and name != "auto"
                       else "")
    # precision auto, engine auto, CPU
    if not native_bf16():
        return install(name, "32", "--precision auto: fp32, this CPU has no native bf16 (AVX-512 BF16 or AMX)")
    if not available("openvino"):
        return install(name, "32", "--precision auto: fp32, the bf16 engine needs openvino: pip install -e \".[fast]\"")
    key = _check_key(model) if engine_cache.cache_dir() is not None else None
    db = engine_cache.cached_check(key) if key else None
    fp32 = bf16 = None
    remembered = "" if db is None else ", remembered from an earlier run with these weights on this CPU"
    if db is None:
        graph = onnx_bytes(model.eval_net)
        fp32 = build_engine(model.eval_net, "openvino", device, model=graph, **kwargs)
        bf16 = build_engine(model.eval_net, "openvino-bf16", device, model=graph, **kwargs)
        db = sampler_psnr(model.diffusion, fp32, bf16)
        if key:
            engine_cache.store_check(key, db)
    if db >= min_psnr:
        return install("openvino-bf16", "bf16", f"--precision auto: native bf16 CPU, {db:.1f} dB from fp32 on the "
                       f"check image (≥ {min_psnr:g}{remembered}); --precision 32 for exact fp32", db, bf16)
    return install("openvino", "32", f"--precision auto: fp32, bf16 was {db:.1f} dB from fp32 on the check image "
                   f"(< {min_psnr:g}{remembered})", db, fp32)


def _check_key(model: nn.Module) -> str:
    """The cache key of ``--precision auto``'s check: the weights, the sampler's settings, this CPU and OpenVINO."""
    import openvino as ov

    diffusion = model.diffusion
    settings = sorted((k, v) for k, v in vars(diffusion).items()
                      if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str, tuple)))
    buffers = [(k, v.tolist()) for k, v in diffusion.state_dict().items()] if isinstance(diffusion, nn.Module) else []
    return engine_cache.network_key(model.eval_net, "precision check", CHECK_SIDE, type(diffusion).__qualname__,
                                    settings, buffers, cpu_identity(), ov.__version__)


def _openvino_bf16_ok() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def use_engine(model: nn.Module, name: str = "auto", device: torch.device | str | None = None,
               precision: str = "32") -> str:
    """:func:`select_engine` returning the name of the engine installed (``pytorch`` for models without one)."""
    return select_engine(model, name, device, precision).engine


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
