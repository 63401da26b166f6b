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

import hashlib
import importlib
import pickle
import re
from collections.abc import Callable, Mapping
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


# ---------------------------------------------------------------------------------------------- errors
class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: the message names the file and what is wrong with it."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that would run code (pickled objects) or build something outside the suite."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose weights do not fit the model its config (or the run's config) builds."""


# ---------------------------------------------------------------------------------------------- reading files
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
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
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


def validate_model_config(config: Any, source: str = "stored model config") -> None:
    """Refuse, before anything is built, a config whose tree would instantiate anything but suite classes.

    Walks every mapping and list (``_args_`` included); every ``_target_`` must pass the allowlist (see the
    module doc), keys must be strings, and no string may hold an unresolved ``${...}`` interpolation (stored
    configs are resolved when saved, and a resolver could read the environment). Raises
    :class:`UnsafeCheckpointError` naming the offending entry.
    """
    def refuse(where: str, why: str, value: Any = None) -> None:
        shown = "" if value is None else f" = {value!r}"[:120]
        raise UnsafeCheckpointError(f"{source}: {where}{shown} is refused: {why}. Nothing was instantiated.")

    def walk(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            if "_target_" in node:  # a node's own target first, then what it would be called with
                why = _target_refusal(node["_target_"])
                if why:
                    refuse(f"{where}._target_" if where else "_target_", why, node["_target_"])
            for key, value in node.items():
                if not isinstance(key, str):
                    refuse(f"{where or '<root>'}", f"key {key!r} is not a string")
                path = f"{where}.{key}" if where else key
                if key == "_args_" and not isinstance(value, (list, tuple)):
                    refuse(path, "_args_ must be a list")
                elif key.startswith("_") and key.endswith("_") and key not in _HYDRA_KEYS:
                    refuse(path, "unknown Hydra special key")
                walk(value, path)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        elif isinstance(node, str):
            if "${" in node:
                refuse(where, "unresolved interpolation in a stored config", node)
        elif not (node is None or isinstance(node, (bool, int, float))):
            refuse(where, f"a {type(node).__name__} is not a plain config value")

    if not isinstance(config, Mapping):
        raise CheckpointError(f"{source} is a {type(config).__name__}, not a mapping")
    if "_target_" not in config:
        raise CheckpointError(f"{source} has no _target_: it does not say which model to build")
    walk(config, "")


def instantiate_model_config(config: Mapping, source: str = "stored model config"):
    """:func:`validate_model_config`, then Hydra's ``instantiate``: the only way the suite builds a stored config."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    validate_model_config(config, source)
    try:
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


def mismatch_message(expected: Mapping[str, Any], found: Mapping[str, Any], source: str,
                     asked: str = "the config asks for") -> str | None:
    """A few lines saying how the weights in ``found`` (from ``source``) differ from ``expected`` (None: they fit)."""
    missing, unexpected, shapes = state_mismatch(expected, found)
    if not (missing or unexpected or shapes):
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
    return "\n".join(lines)


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                            asked: str = "the config asks for") -> nn.Module:
    """``model.load_state_dict(state_dict)`` (strict), refusing a misfit with :func:`mismatch_message`."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: 'state_dict' is a {type(state_dict).__name__}, not a mapping of tensors")
    if getattr(model, "weights_from_files", False) and not state_dict:
        return model  # e.g. a Diff-Restorer pipeline checkpoint: the weights are in the stage files it names
    message = mismatch_message(model.state_dict(), state_dict, source, asked)
    if message:
        raise CheckpointMismatchError(message)
    model.load_state_dict(state_dict)
    return model


# ---------------------------------------------------------------------------------------------- building models
def build_from_config(config: dict, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"):
    """Validate and instantiate a stored model config, load its weights, and return the model in eval mode.

    The one place a stored config is checked (:func:`instantiate_model_config`): once per load, after any edit."""
    model = instantiate_model_config(config, f"model config of {source}")
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
