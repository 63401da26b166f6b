"""The one checkpoint loader of the suite: a checkpoint is data, never a program.

Every load goes through this module: ``src.restore --ckpt``, ``src.eval ckpt_path=`` (official releases and older
Lightning checkpoints too: ``run_config``), the app, the stages' ``from_checkpoint`` (:class:`StoredConfigMixin`,
which also writes the config into every checkpoint under :data:`MODEL_CONFIG_KEY`), the Diff-Restorer pipeline
builder, training resumption (``FaultTolerance``'s reader: :func:`check_resume_checkpoint`) and
``model.init_from_official`` (official files are read with :func:`read_checkpoint`). A stored config is checked
once per load, where it is built (:func:`build_from_config`). Two rules hold everywhere:

1. **No pickled code.** Files are read with ``torch.load(weights_only=True)`` (tensors, numbers, strings, lists,
   dicts) or as safetensors; a file that needs anything else to unpickle (a ``__reduce__`` payload, a pickled
   module) is refused with :class:`UnsafeCheckpointError` and nothing in it runs.
2. **A stored config chooses only suite classes.** Before anything is instantiated, :func:`validate_model_config`
   walks the whole stored model config (``uir_model_config`` of a ``.ckpt``, ``config.yaml`` of an export folder)
   and refuses every ``_target_`` that is not a suite ``nn.Module`` class (``src.*``), a listed suite factory
   (:data:`SUITE_FACTORIES`) or a torch optimiser / learning-rate scheduler. Names are checked before they are
   imported, so a foreign module is never even imported.

Formats accepted by :func:`load_restoration_model`:

* a suite checkpoint (``.ckpt`` written by ``src.train``, or a Diff-Restorer pipeline checkpoint): the model is
  rebuilt from the config stored in it and its weights loaded;
* an export folder written by ``python -m src.export --format safetensors`` (or the ``model.safetensors`` inside
  it): ``config.yaml`` + ``model.safetensors``, no pickle involved at all.

A checkpoint that does not fit its model is described in one sentence (what the file holds vs. what the config
asks: e.g. DiffUIR-T vs DiffUIR-L), never as a state-dict dump; method packages register a describer of their
state dicts with :func:`register_state_describer` (DiffUIR: ``src.diffuir.official``).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

MODEL_CONFIG_KEY = "uir_model_config"  # where a suite checkpoint keeps the config that rebuilds its model
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.yaml"
EXPORT_FORMAT_VERSION = 1

# Suite callables that are not nn.Module classes but may appear as a stored config's ``_target_``.
SUITE_FACTORIES: frozenset[str] = frozenset({
    "src.diff_restorer.sd_loading.load_unet",
    "src.diff_restorer.sd_loading.load_vae",
    "src.diff_restorer.sd_loading.tiny_unet",
    "src.diff_restorer.sd_loading.tiny_vae",
    "src.diff_restorer.pipeline.DiffRestorerPipeline.from_checkpoints",
})
# Suite classes that are not nn.Module subclasses but are plain value holders a model config may build.
SUITE_CLASSES: frozenset[str] = frozenset()
_HYDRA_KEYS = {"_target_", "_args_", "_partial_", "_convert_", "_recursive_"}
_DOTTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")

# Bounds of a stored config, whatever its file does with aliases or shared references: the tree it expands to
# (what Hydra would build from it) may have at most MAX_CONFIG_NODES nodes and MAX_CONFIG_DEPTH levels.
MAX_CONFIG_NODES = 20_000
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_BYTES = 1 << 20  # an export's config.yaml (ours are a few KB)
# Config arguments that name files to read. They must be local paths (no URL, no hub id): a file never makes the
# suite go online. When they exist they must be of the stated kind; a missing one is the class's own error.
PATH_ARGUMENTS: dict[str, str] = {"weights": "file", "clip_weights": "file", "stage1_ckpt": "file",
                                  "stage2_ckpt": "file", "init_from_official": "file", "init_from": "file or folder",
                                  "sd_dir": "file or folder"}  # SD-1.5: a diffusers folder or one .safetensors file
# Arguments that only initialise weights which the checkpoint's own state dict then replaces: not followed (not
# even read) when a stored model is rebuilt with its weights.
WEIGHT_INIT_ARGUMENTS: tuple[str, ...] = ("init_from_official", "init_from")
_REMOTE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*://|hf[-_]hub:)", re.IGNORECASE)


def _open_clip_names() -> frozenset[str]:
    import open_clip  # its bundled architecture configs: a fixed, local list

    return frozenset(open_clip.list_models())


# Per-class rules for constructor arguments: {target: {argument: (allowed values() -> set, what they are)}}.
ARGUMENT_CHOICES: dict[str, dict[str, tuple[Callable[[], frozenset[str]], str]]] = {
    "src.diff_restorer.clip_encoder.CLIPImageEncoder": {
        "model_name": (_open_clip_names, "an open_clip architecture bundled with open_clip (open_clip.list_models())"),
    },
}


# ---------------------------------------------------------------------------------------------- errors
class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: the message names the file and what is wrong with it."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that would run code (pickled objects) or build something outside the suite."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose weights do not fit the model its config (or the run's config) builds."""


class ConfigBombError(UnsafeCheckpointError):
    """A stored config that refers to itself, or expands (aliases, shared references) past the node/depth limits."""


class CheckpointReferenceError(UnsafeCheckpointError):
    """A checkpoint that names itself (a cycle) or a checkpoint that names yet another one (past one level)."""


class DamagedWeightsError(CheckpointError):
    """Weights of the wrong dtype, or holding NaN / infinity: they would restore garbage."""


def refused_model_file(error: BaseException) -> BaseException | None:
    """The :class:`CheckpointError` (refused or damaged model file) or :class:`FileNotFoundError` (a file a
    config names is missing) behind ``error``, following its causes (Hydra wraps what a constructor raises);
    None if there is none. Entry points turn it into one line and exit status 2."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (CheckpointError, FileNotFoundError)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


# ---------------------------------------------------------------------------------------------- offline, references
_HUB_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE")
_HUB_MODULES = ("huggingface_hub", "diffusers", "transformers", "open_clip", "timm")


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """The model hub libraries offline for the block: their environment variables set to 1 and the flags they read
    at import (``huggingface_hub.constants.HF_HUB_OFFLINE`` and its copies) set to True; restored afterwards.

    Loading a checkpoint runs inside it, so no file can make huggingface_hub / diffusers / open_clip connect
    (a request raises ``OfflineModeIsEnabled`` before any socket is opened)."""
    saved_env = {k: os.environ.get(k) for k in _HUB_VARIABLES}
    saved_flags = []
    for name, module in list(sys.modules.items()):
        if module is not None and name.split(".")[0] in _HUB_MODULES \
                and isinstance(getattr(module, "HF_HUB_OFFLINE", None), bool):
            saved_flags.append((module, module.HF_HUB_OFFLINE))
    os.environ.update({k: "1" for k in _HUB_VARIABLES})
    for module, _ in saved_flags:
        module.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for module, value in saved_flags:
            module.HF_HUB_OFFLINE = value
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# The files whose stored configs are being built right now (outermost first): a checkpoint named while building
# one of them is read one level deep at most, and never one of them again.
_BUILDING: contextvars.ContextVar[tuple[tuple[str, tuple[int, int]], ...]] = contextvars.ContextVar(
    "uir_building", default=())


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


@contextlib.contextmanager
def _building_from(source: str | Path | None) -> Iterator[None]:
    identity = _identity(Path(source)) if source is not None else None
    if identity is None:
        yield
        return
    token = _BUILDING.set((*_BUILDING.get(), (str(source), identity)))
    try:
        yield
    finally:
        _BUILDING.reset(token)


def check_reference(path: str | Path, what: str = "checkpoint") -> None:
    """Refuse reading ``path`` while a stored config is being built if it is one of the files being built (a
    cycle: e.g. a pipeline whose ``stage1_ckpt`` is itself) or if it would be a second level of references
    (a checkpoint named by a checkpoint named by the one being loaded)."""
    chain = _BUILDING.get()
    if not chain:
        return
    identity = _identity(Path(path))
    for source, seen in chain:
        if identity == seen:
            raise CheckpointReferenceError(f"{what} {path} is refused: it is the file being loaded ({source}) "
                                           "again; a checkpoint may not refer to itself. Nothing was built.")
    if len(chain) >= 2:
        raise CheckpointReferenceError(
            f"{what} {path} is refused: it is named by {chain[-1][0]}, itself named by {chain[0][0]}; stored "
            "configs may refer to other checkpoints one level deep only. Nothing was built.")


# ---------------------------------------------------------------------------------------------- reading files
def _zip_refusal(path: Path, size: int) -> str | None:
    """Why a zip-format torch file is refused before torch reads it (None: fine). torch.save stores its records
    uncompressed, so a compressed record (a few bytes on disk unpacking to gigabytes) is never one of ours."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # torch's reader gives the precise error
    packed = [i for i in infos if i.compress_type != zipfile.ZIP_STORED]
    if packed:
        return (f"record {packed[0].filename!r} is compressed ({packed[0].compress_size:,} bytes unpacking to "
                f"{packed[0].file_size:,}); torch.save never compresses, so this file was crafted or rewritten")
    declared = sum(i.file_size for i in infos)
    if declared > size:
        return f"its records declare {declared:,} bytes, more than the file's {size:,}"
    return None


def _first_bytes(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def read_checkpoint(path: str | Path, map_location: str | torch.device | Callable | None = "cpu",
                    what: str = "checkpoint", mmap: bool = False) -> dict:
    """``torch.load(path, weights_only=True)`` with one clear error per way a file can be wrong: the suite's one
    reader of ``.ckpt`` / ``.pt`` files.

    Missing → :class:`FileNotFoundError`; pickled code → :class:`UnsafeCheckpointError`; empty, truncated, not a
    torch file, or not a dict → :class:`CheckpointError`. ``what`` names the file's role in the messages; ``mmap``
    maps the tensors instead of reading them (to look at a few values of a large file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder: expected a checkpoint file (e.g. .../checkpoints/"
                              f"last.ckpt) or an export folder holding {EXPORT_WEIGHTS} and {EXPORT_CONFIG}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): an interrupted save or copy")
    check_reference(path, what)
    is_zip = _first_bytes(path, 2) == b"PK"
    if is_zip and (why := _zip_refusal(path, size)):
        raise UnsafeCheckpointError(f"{what} {path} was refused: {why}. Nothing was loaded.")
    try:  # zip files are memory-mapped: tensors the caller never uses (optimiser states, extra keys) stay on disk
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap or is_zip)
    except pickle.UnpicklingError as e:
        text = str(e)
        found = re.search(r"(?:GLOBAL|[Uu]nsupported global:?) ([\w.]+)", text)
        if found:
            raise UnsafeCheckpointError(
                f"{what} {path} was refused: it holds pickled Python objects ({found.group(1)}), not only tensors "
                "and plain values; a checkpoint is data, and nothing in it was run (load it only if you trust it, "
                "and re-save its tensors)") from None
        detail = re.search(r"WeightsUnpickler error: \s*(.+)", text)
        raise CheckpointError(f"{what} {path} is not a torch checkpoint ({_describe_bytes(path, size)}"
                              + (f"; {detail.group(1).strip()}" if detail else "") + ")") from None
    except Exception as e:  # torch.load's many ways to fail on a damaged or foreign file (KeyError, EOFError, ...)
        first = (str(e).splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
        if _first_bytes(path, 2) == b"PK":
            raise CheckpointError(f"{what} {path} is truncated or damaged ({size:,} bytes; its zip archive cannot "
                                  f"be read: {first})") from None
        raise CheckpointError(f"{what} {path} is not a torch checkpoint ({_describe_bytes(path, size)}): "
                              f"{first}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} {path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def _describe_bytes(path: Path, size: int) -> str:
    head = _first_bytes(path)
    return f"{size:,} bytes starting {head!r}"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (recorded by exports, so an export names the exact checkpoint it came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- config allowlist
def _locate(target: str):
    """Import the longest importable module prefix of ``target`` and walk the rest as attributes."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(target)


def _target_refusal(target: Any) -> str | None:
    """Why ``target`` may not be instantiated from a stored config (None: allowed)."""
    if not isinstance(target, str):
        return f"a _target_ must be a dotted name, got a {type(target).__name__}"
    if not _DOTTED.fullmatch(target):
        return "not a plain dotted name (private and dunder names are refused)"
    if target in SUITE_FACTORIES:
        return None
    if target.startswith("src."):
        family = "suite"
    elif target.startswith("torch.optim."):
        family = "torch.optim"
    else:
        return ("not a suite class (src.*) nor a torch optimiser / LR scheduler; a stored config may build only "
                "those")
    try:
        obj = _locate(target)  # only suite modules and torch.optim are ever imported here
    except (ImportError, AttributeError):
        return "no such class in this version of the suite"
    if not isinstance(obj, type):
        return f"{target} is a {type(obj).__name__}, not a class (only listed suite factories may be functions)"
    if family == "suite":
        if not obj.__module__.startswith("src."):
            return f"it resolves to {obj.__module__}.{obj.__qualname__}, which is not defined by the suite"
        if not issubclass(obj, nn.Module) and f"{obj.__module__}.{obj.__qualname__}" not in SUITE_CLASSES:
            return "only the suite's model classes (torch nn.Module subclasses) may be built from a checkpoint"
        return None
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

    if obj.__module__.startswith("torch.optim") and issubclass(obj, (Optimizer, LRScheduler, ReduceLROnPlateau)):
        return None
    return "only torch optimisers and learning-rate schedulers are allowed from torch.optim"


def _check_extent(config: Any, source: str) -> None:
    """Refuse a config that refers to itself or whose expanded tree passes :data:`MAX_CONFIG_NODES` nodes or
    :data:`MAX_CONFIG_DEPTH` levels. Shared nodes (YAML aliases, pickle memo references) are visited once and
    their expanded size remembered, so a "billion laughs" file is measured in as many steps as it has nodes."""
    memo: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, height)
    on_path: set[int] = set()

    def bomb(why: str) -> ConfigBombError:
        return ConfigBombError(f"{source} is refused: {why}. Nothing was instantiated.")

    def extent(node: Any, depth: int) -> tuple[int, int]:
        if isinstance(node, Mapping):
            children = list(node.values())
        elif isinstance(node, (list, tuple)):
            children = list(node)
        else:
            return 1, 0
        key = id(node)
        if key in on_path:
            raise bomb("it contains itself (a self-referencing alias or object)")
        if key not in memo:
            if depth >= MAX_CONFIG_DEPTH:
                raise bomb(f"it nests deeper than {MAX_CONFIG_DEPTH} levels")
            on_path.add(key)
            total, height = 1, 0
            for child in children:
                size, h = extent(child, depth + 1)
                total, height = total + size, max(height, h + 1)
                if total > MAX_CONFIG_NODES:
                    raise bomb(f"it expands to more than {MAX_CONFIG_NODES:,} nodes (aliases or shared references "
                               "repeated)")
            on_path.discard(key)
            memo[key] = (total, height)
        total, height = memo[key]
        if depth + height > MAX_CONFIG_DEPTH:
            raise bomb(f"it nests deeper than {MAX_CONFIG_DEPTH} levels")
        return total, height

    extent(config, 0)


def _argument_refusal(target: str, key: str, value: Any) -> str | None:
    """Why argument ``key = value`` of a ``target`` node is refused (None: allowed)."""
    kind = PATH_ARGUMENTS.get(key)
    if kind is not None and value is not None:
        if not isinstance(value, str):
            return f"a {kind} path must be a string"
        path = Path(value)
        fits = {"file": path.is_file, "folder": path.is_dir}.get(kind, lambda: path.is_file() or path.is_dir())
        if path.exists() and not fits():
            return f"must name a local {kind}" + (" (a regular file, not a device or pipe)" if kind == "file" else "")
    rule = ARGUMENT_CHOICES.get(target, {}).get(key)
    if rule is not None and (not isinstance(value, str) or value not in rule[0]()):
        return f"must be {rule[1]}"
    return None


def validate_model_config(config: Any, source: str = "stored model config") -> None:
    """Refuse, before anything is built, a config whose tree would instantiate anything but suite classes, or
    with arguments that could reach the network.

    First the tree's size is bounded (:func:`_check_extent`: no self-reference, at most :data:`MAX_CONFIG_NODES`
    nodes and :data:`MAX_CONFIG_DEPTH` levels once aliases are expanded). Then every mapping and list is walked
    (``_args_`` included): every ``_target_`` must pass the allowlist (see the module doc); constructor arguments
    are checked per class (:data:`ARGUMENT_CHOICES`, e.g. CLIP model names from open_clip's bundled list) and
    by name (:data:`PATH_ARGUMENTS`: local paths); no string may be a URL or hub id (``hf-hub:``), nor hold an
    unresolved ``${...}`` interpolation (a resolver could read the environment); keys must be strings; the root
    may not be ``_partial_``. Raises :class:`UnsafeCheckpointError` (:class:`ConfigBombError` for the bounds)
    naming the offending entry.
    """
    def refuse(where: str, why: str, value: Any = None) -> None:
        shown = "" if value is None else f" = {value!r}"[:120]
        raise UnsafeCheckpointError(f"{source}: {where}{shown} is refused: {why}. Nothing was instantiated.")

    def walk(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            target = node.get("_target_")
            if target is not None or "_target_" in node:  # a node's own target first, then its arguments
                why = _target_refusal(target)
                if why:
                    refuse(f"{where}._target_" if where else "_target_", why, target)
            for key, value in node.items():
                if not isinstance(key, str):
                    refuse(f"{where or '<root>'}", f"key {key!r} is not a string")
                path = f"{where}.{key}" if where else key
                if key == "_args_" and not isinstance(value, (list, tuple)):
                    refuse(path, "_args_ must be a list")
                elif key.startswith("_") and key.endswith("_") and key not in _HYDRA_KEYS:
                    refuse(path, "unknown Hydra special key")
                elif isinstance(target, str) and (why := _argument_refusal(target, key, value)):
                    refuse(path, why, value)
                walk(value, path)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        elif isinstance(node, str):
            if "${" in node:
                refuse(where, "unresolved interpolation in a stored config", node)
            if _REMOTE.match(node):
                refuse(where, "a stored config may name local files only, not URLs or model-hub ids", node)
        elif not (node is None or isinstance(node, (bool, int, float))):
            refuse(where, f"a {type(node).__name__} is not a plain config value")

    if not isinstance(config, Mapping):
        raise CheckpointError(f"{source} is a {type(config).__name__}, not a mapping")
    if "_target_" not in config:
        raise CheckpointError(f"{source} has no _target_: it does not say which model to build")
    _check_extent(config, source)
    if config.get("_partial_"):
        refuse("_partial_", "the stored model must be built, not deferred", config["_partial_"])
    walk(config, "")


def instantiate_model_config(config: Mapping, source: str = "stored model config", origin: str | Path | None = None):
    """:func:`validate_model_config`, then Hydra's ``instantiate``: the only way the suite builds a stored config.

    Builds with the model hubs offline (:func:`hub_offline`); ``origin``, the file the config was read from, is
    recorded so that checkpoints the config names are read one level deep at most (:func:`check_reference`)."""
    validate_model_config(config, source)
    return _instantiate(config, origin)


def _instantiate(config: Mapping, origin: str | Path | None):
    """Hydra's ``instantiate`` of an already validated config, hubs offline, ``origin`` recorded."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        with hub_offline(), _building_from(origin):
            return instantiate(dict(config))
    except InstantiationException as e:  # a checkpoint error raised while building (e.g. a stage file): say it as is
        cause = e.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, (CheckpointError, FileNotFoundError, KeyError)):
            raise cause from None
        raise


# ---------------------------------------------------------------------------------------------- fitting weights
_DESCRIBERS: list[Callable[[Mapping[str, torch.Tensor]], str | None]] = []


def register_state_describer(fn: Callable[[Mapping[str, torch.Tensor]], str | None]):
    """Register ``fn(state_dict) -> 'DiffUIR with dim 32, ...' | None`` (a method package describing its weights)."""
    if fn not in _DESCRIBERS:
        _DESCRIBERS.append(fn)
    return fn


def describe_state(state: Mapping[str, torch.Tensor]) -> str | None:
    """A one-line description of what a state dict holds, from the first describer that recognises it."""
    for fn in _DESCRIBERS:
        text = fn(state)
        if text:
            return text
    return None


def state_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any]) -> tuple[list, list, list]:
    """(missing keys, unexpected keys, [(key, expected shape, found shape)]) between two state dicts."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [(k, tuple(expected[k].shape), tuple(found[k].shape)) for k in expected
              if k in found and torch.is_tensor(found[k]) and torch.is_tensor(expected[k])
              and tuple(expected[k].shape) != tuple(found[k].shape)]
    return missing, unexpected, shapes


def _dtype_kind(t: torch.Tensor) -> str:
    return "complex" if t.is_complex() else "floating" if t.is_floating_point() else str(t.dtype)


def dtype_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """[(key, expected dtype, found dtype)] of tensors whose kind differs (integers where floats are expected, or
    another integer type); floating types may differ in precision (load_state_dict casts them)."""
    return [(k, str(expected[k].dtype), str(found[k].dtype)) for k in expected
            if k in found and torch.is_tensor(found[k]) and torch.is_tensor(expected[k])
            and _dtype_kind(expected[k]) != _dtype_kind(found[k])]


def check_finite(state: Mapping[str, Any], source: str, keys=None) -> None:
    """Refuse weights holding NaN or infinity (they restore black or noise images) with
    :class:`DamagedWeightsError` naming the first such tensor; ``keys``: only those (default all)."""
    bad = [k for k in (state if keys is None else keys)
           if torch.is_tensor(state.get(k)) and (state[k].is_floating_point() or state[k].is_complex())
           and state[k].device.type != "meta" and not bool(torch.isfinite(state[k]).all())]
    if bad:
        raise DamagedWeightsError(f"{source} is refused: {len(bad)} tensor(s) hold NaN or infinity, e.g. {bad[0]}; "
                                  "the weights are damaged (a diverged run or a corrupted file)")


def mismatch_message(expected: Mapping[str, Any], found: Mapping[str, Any], source: str,
                     asked: str = "the config asks for") -> str | None:
    """A few lines saying how the weights in ``found`` (from ``source``) differ from ``expected`` in names,
    shapes or dtypes (None: they fit)."""
    missing, unexpected, shapes = state_mismatch(expected, found)
    dtypes = dtype_mismatch(expected, found)
    if not (missing or unexpected or shapes or dtypes):
        return None
    held, wanted = describe_state(found), describe_state(expected)
    lines = [f"{source} does not fit the model: "
             + (f"it holds {held}; {asked} {wanted}" if held and wanted and held != wanted else
                f"its weights differ from what {asked.removesuffix(' for')}")]
    if shapes:
        k, e, f = shapes[0]
        lines.append(f"{len(shapes)} tensor(s) differ in shape, e.g. {k}: file {list(f)} vs model {list(e)}")
    if missing:
        lines.append(f"{len(missing)} tensor(s) missing from the file, e.g. {', '.join(missing[:3])}")
    if unexpected:
        lines.append(f"{len(unexpected)} tensor(s) in the file the model does not have, e.g. "
                     f"{', '.join(unexpected[:3])}")
    if dtypes:
        k, e, f = dtypes[0]
        lines.append(f"{len(dtypes)} tensor(s) of the wrong dtype, e.g. {k}: file {f} vs model {e}")
    return "\n".join(lines)


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                            asked: str = "the config asks for") -> nn.Module:
    """``model.load_state_dict(state_dict)`` (strict), refusing a misfit with :func:`mismatch_message`."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: 'state_dict' is a {type(state_dict).__name__}, not a mapping of tensors")
    if getattr(model, "weights_from_files", False) and not state_dict:
        return model  # e.g. a Diff-Restorer pipeline checkpoint: the weights are in the stage files it names
    expected = model.state_dict()
    message = mismatch_message(expected, state_dict, source, asked)
    if message:
        raise CheckpointMismatchError(message)
    check_finite(state_dict, source, keys=expected)
    model.load_state_dict(state_dict)
    return model


# ---------------------------------------------------------------------------------------------- building models
def without_weight_init(config: Mapping) -> dict:
    """``config`` with :data:`WEIGHT_INIT_ARGUMENTS` set to None at its root (the state dict replaces them)."""
    return {k: (None if k in WEIGHT_INIT_ARGUMENTS else v) for k, v in config.items()}


def check_sizes_before_building(config: Mapping, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Build ``config`` (validated) on the meta device (shapes only, no memory) and refuse it with
    :class:`CheckpointMismatchError` if the weights' shapes or dtypes differ: a config asking for a model far
    larger than its file (``net.dim: 4096`` beside DiffUIR-T weights) is refused before anything is allocated."""
    with torch.device("meta"):
        probe = _instantiate(config, origin=source)
    if getattr(probe, "weights_from_files", False) and not state_dict:
        return
    message = mismatch_message(probe.state_dict(), state_dict, source)
    if message:
        raise CheckpointMismatchError(message)


def build_from_config(config: dict, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"):
    """Validate a stored model config, check it against its weights' shapes on the meta device, build it, load
    its weights (dtypes and finiteness checked), and return the model in eval mode.

    The one place a stored config is checked (:func:`validate_model_config`): once per load, after any edit."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: 'state_dict' is a {type(state_dict).__name__}, not a mapping of tensors")
    validate_model_config(config, f"model config of {source}")
    build = without_weight_init(config) if state_dict else dict(config)
    if state_dict:
        check_sizes_before_building(build, state_dict, source)
    model = _instantiate(build, origin=source)
    load_state_dict_checked(model, state_dict, source)
    model.model_config = config
    return model.eval()


def stored_config(ckpt: Mapping, path: str | Path) -> dict:
    """:data:`MODEL_CONFIG_KEY` of a suite checkpoint dict, or an error saying what the file is instead."""
    config = ckpt.get(MODEL_CONFIG_KEY)
    if config is not None:
        return config
    keys = sorted(map(str, ckpt))[:8]
    if "ema" in ckpt or "model" in ckpt:
        raise KeyError(f"{path} has no '{MODEL_CONFIG_KEY}': it looks like an official DiffUIR release (keys {keys}); "
                       "evaluate it with `python -m src.eval experiment=diffuir_<size> ckpt_path=...` or train from it "
                       "with model.init_from_official=...")
    raise KeyError(f"{path} has no '{MODEL_CONFIG_KEY}': it was not written by this suite's src.train (keys {keys})")


def _state_dict_of(ckpt: Mapping, path: str | Path) -> dict:
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} has no 'state_dict' mapping of tensors (found {type(state).__name__})")
    return dict(state)


def is_export(path: str | Path) -> bool:
    """True for an export folder (``model.safetensors`` + ``config.yaml``) or the ``model.safetensors`` in one."""
    path = Path(path)
    return (path.is_dir() and (path / EXPORT_WEIGHTS).is_file()) or (path.is_file() and path.suffix == ".safetensors")


def read_export(path: str | Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """(export info from config.yaml, model config, weights) of an export folder; no pickle involved. The config is
    checked when it is built (:func:`build_from_config`)."""
    import yaml
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights, config_file = folder / EXPORT_WEIGHTS, folder / EXPORT_CONFIG
    if path.is_file() and path.name != EXPORT_WEIGHTS:
        weights = path
    for needed in (weights, config_file):
        if not needed.is_file():
            raise FileNotFoundError(f"export folder {folder} lacks {needed.name} (written by `python -m src.export "
                                    "--format safetensors`)")
    if config_file.stat().st_size > MAX_CONFIG_BYTES:
        raise UnsafeCheckpointError(f"{config_file} is refused: {config_file.stat().st_size:,} bytes, more than the "
                                    f"{MAX_CONFIG_BYTES:,} an export's config may have")
    try:
        info = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_file} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(info, dict) or not isinstance(info.get("model_config"), dict):
        raise CheckpointError(f"{config_file} has no 'model_config' mapping (not written by src.export)")
    config = info["model_config"]
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {e}") from None
    return info, config, state


def _build_from_run_config(ckpt: Mapping, run_config: Mapping, path: Path, run_name: str):
    """A checkpoint without a stored config, built from the run's own model config: an older suite / Lightning
    checkpoint (its state dict loaded strictly) or an official DiffUIR release (``init_from_official``)."""
    from hydra.utils import instantiate

    if "state_dict" in ckpt:
        model = instantiate(dict(run_config))
        try:
            load_state_dict_checked(model, ckpt["state_dict"], str(path), asked=f"the config ({run_name}) asks for")
        except CheckpointMismatchError as e:
            raise CheckpointMismatchError(
                f"{e}\npass the experiment the checkpoint was trained with, e.g. experiment=diffuir_t_demo for "
                "`make demo`'s checkpoint") from None
    elif "ema" in ckpt or "model" in ckpt:
        model = instantiate(dict(run_config), init_from_official=str(path))
    else:
        raise CheckpointError(f"{path}: neither a suite/Lightning checkpoint ('state_dict') nor an official DiffUIR "
                              f"release ('model' / 'ema'); its keys: {sorted(map(str, ckpt))[:10]}")
    model.model_config = dict(run_config)
    return model.eval()


def load_restoration_model(path: str | Path, map_location: str | torch.device = "cpu",
                           edit: Callable[[dict], None] | None = None, run_config: Mapping | None = None,
                           run_name: str = "the run's config") -> nn.Module:
    """The model saved in ``path``, in eval mode, with its ``model_config``: the loader every entry point uses.

    ``path``: a suite ``.ckpt`` (``src.train``'s, or a Diff-Restorer pipeline checkpoint), or an export folder of
    ``src.export`` (or the ``model.safetensors`` in one). ``edit(config)`` may change the stored config before it
    is checked and built (e.g. another machine's path to frozen weight files: ``from_checkpoint``).
    ``run_config`` (``src.eval``'s ``cfg.model``, named ``run_name`` in messages) builds files that carry no config:
    older Lightning checkpoints and official DiffUIR releases. Errors: :class:`FileNotFoundError` (missing),
    :class:`KeyError` (not a suite checkpoint), :class:`UnsafeCheckpointError` (pickled code or a foreign
    ``_target_``: nothing was run), :class:`CheckpointMismatchError` (weights that do not fit their config),
    :class:`CheckpointError` (empty, truncated, not a torch file, not a dict).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (train one with `python -m src.train ...`; "
                                "checkpoints are written to <run dir>/checkpoints/last.ckpt)")
    info = None
    # a real device even when called while another model is probed on the meta device (check_sizes_before_building:
    # Diff-Restorer stage 2 loads its stage-1 checkpoint in its constructor)
    with hub_offline(), torch.device("cpu"):
        if is_export(path):
            info, config, state = read_export(path)
        else:
            ckpt = read_checkpoint(path, map_location)
            if MODEL_CONFIG_KEY not in ckpt and run_config is not None:
                model = _build_from_run_config(ckpt, run_config, path, run_name)
                return model.to(map_location) if map_location is not None else model
            config, state = stored_config(ckpt, path), _state_dict_of(ckpt, path)
        if edit is not None:
            edit(config)
        model = build_from_config(config, state, source=str(path))
    if info is not None:
        model.export_info = info
    return model.to(map_location) if map_location is not None else model


load_model_from_checkpoint = load_restoration_model  # the earlier name; same function


class StoredConfigMixin:
    """Keeps a model's resolved config in its checkpoints (under :data:`MODEL_CONFIG_KEY`), so that the model can be
    rebuilt from the file alone, and rebuilds it (:meth:`from_checkpoint`). Mixed into every LightningModule of the
    suite; ``model_config`` is set by whoever builds the model (:func:`src.utils.instantiate.build`, the loaders)."""

    model_config: dict | None = None

    def stored_config(self) -> dict | None:
        """The config written into checkpoints (the model's own by default)."""
        return self.model_config

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        config = self.stored_config()
        if config is not None:
            checkpoint[MODEL_CONFIG_KEY] = config

    @classmethod
    def edit_stored_config(cls, config: dict, **overrides) -> None:
        """Apply :meth:`from_checkpoint`'s ``overrides`` to a stored config before it is checked and built; a model
        with options (e.g. other local paths of its frozen weight files) overrides this."""
        if overrides:
            raise TypeError(f"{cls.__name__}.from_checkpoint takes no {', '.join(sorted(overrides))}")

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu", **overrides):
        """The model of ``path`` (through :func:`load_restoration_model`, the stored config edited by
        :meth:`edit_stored_config`), refused unless it is a ``cls``."""
        model = load_restoration_model(path, map_location, edit=lambda config: cls.edit_stored_config(config,
                                                                                                      **overrides))
        if not isinstance(model, cls):
            raise CheckpointError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def check_resume_checkpoint(checkpoint: Mapping, source: str, module: nn.Module | None = None) -> Mapping:
    """A checkpoint to resume training from (read by the caller): its stored model config is checked against the
    allowlist (it is not built: the run's config builds the model) and, when the module being trained is given, its
    weights must fit that module (a checkpoint of another size is described in one sentence)."""
    if checkpoint.get(MODEL_CONFIG_KEY) is not None:
        validate_model_config(checkpoint[MODEL_CONFIG_KEY], f"model config of {source}")
    if module is not None and "state_dict" in checkpoint:
        message = mismatch_message(module.state_dict(), checkpoint["state_dict"], f"checkpoint {source}",
                                   asked="the run's config (experiment / model overrides) asks for")
        if message and getattr(module, "strict_loading", True):
            raise CheckpointMismatchError(message + "\nresume with the experiment and overrides the checkpoint was "
                                          "trained with")
    return checkpoint


def parameter_count(model: nn.Module) -> int:
    """Parameters of the network that restores: ``eval_net`` (DiffUIR's EMA copy: counted once, not beside the
    trained copy) when the model has one, else all of the model's (shared ones once)."""
    network = getattr(model, "eval_net", None)
    if not isinstance(network, nn.Module):
        network = model
    return sum(p.numel() for p in network.parameters())
