"""Export a trained model for sharing: ``python -m src.export --ckpt PATH --format safetensors --out DIR``.

``--format safetensors`` writes a folder the way the ecosystem shares weights (diffusers, timm, the HF Hub):

* ``model.safetensors``: the weights restoration uses, as plain tensors (no pickle). For DiffUIR the EMA copy
  when the checkpoint has one (what ``src.restore`` and the paper's test script use) stored as the network itself,
  so the export is a model without an EMA; for the Diff-Restorer pipeline both stages' trained parts (``stage1.*``,
  ``stage2.*``; the frozen SD / CLIP parts are rebuilt from the files or seeds their configs name);
* ``config.yaml``: ``model_config`` (the Hydra config that builds the model, checked against the suite's allowlist
  when loaded, as a checkpoint's is), ``kind``, ``size``, ``parameters`` (of the restoring network),
  ``weights`` (which copy), ``source_checkpoint`` and its ``source_sha256``; ``model.init_from`` and
  ``init_from_official`` are stored as null (the weights replace them) and noted as ``initialised_from``.

``src.restore --ckpt DIR``, ``src.eval ckpt_path=DIR`` and the app load such a folder directly
(:func:`src.utils.checkpoints.load_restoration_model`).

Other formats register themselves in :data:`EXPORTERS` from their own module, in one line::

    from src.export import register_exporter
    register_exporter("onnx", export_onnx)   # export_onnx(model, source, out, **options) -> list[Path]

and list that module in :data:`EXPORTER_MODULES` so the command line imports it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from src.utils.atomic import atomic_write_bytes, atomic_write_text, check_writable_folder, one_line, temporary_name_for
from src.utils.checkpoints import (
    EXPORT_CONFIG,
    EXPORT_FORMAT_VERSION,
    EXPORT_WEIGHTS,
    WEIGHT_INIT_ARGUMENTS,
    describe_state,
    is_export,
    load_restoration_model,
    parameter_count,
    sha256_of,
    without_weight_init,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Exporter = Callable[..., list[Path]]
EXPORTERS: dict[str, Exporter] = {}
# modules that register further exporters (imported by the command line when present)
EXPORTER_MODULES: list[str] = ["src.diffuir.engines"]


def register_exporter(name: str, fn: Exporter | None = None):
    """Register ``fn(model, source: Path, out: Path, **options) -> list of written paths`` as ``--format name``
    (usable as a decorator when ``fn`` is omitted)."""
    def add(f: Exporter) -> Exporter:
        EXPORTERS[name] = f
        return f

    return add if fn is None else add(fn)


def _load_exporter_modules() -> None:
    for name in EXPORTER_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(name)


# ---------------------------------------------------------------------------------------------- what is exported
def _plain(value):
    """A config as YAML-safe plain values (tuples → lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def restoration_weights(model: nn.Module) -> tuple[dict, dict[str, torch.Tensor], str]:
    """(model config, state dict, which weights) that rebuild the restoring model without its training extras.

    * DiffUIR (``eval_net`` + ``ema``): the EMA network's weights stored as ``net.*`` and ``ema: null`` in the
      config, so the rebuilt model restores with exactly the EMA weights;
    * models with ``export_config`` / ``stage_state_dict`` (the Diff-Restorer pipeline): those;
    * any other model of the suite: its config and state dict as they are.
    """
    config = getattr(model, "model_config", None)
    if not isinstance(config, dict):
        raise ValueError(f"{type(model).__name__} carries no model config: only models loaded from a suite checkpoint "
                         "can be exported")
    if callable(getattr(model, "export_config", None)):
        return model.export_config(), dict(model.stage_state_dict()), "trained parts of both stages"
    ema = getattr(model, "ema", None)
    net = getattr(model, "net", None)
    if isinstance(ema, nn.Module) and isinstance(net, nn.Module) and "ema" in config:
        state = {k: v for k, v in model.state_dict().items() if not k.startswith(("net.", "ema."))}
        state.update({f"net.{k}": v for k, v in model.eval_net.state_dict().items()})
        return {**config, "ema": None}, state, "ema"
    return dict(config), dict(model.state_dict()), "net"


def _size_name(model: nn.Module, config: dict) -> str | None:
    net = config.get("net") if isinstance(config.get("net"), dict) else None
    if net and "dim" in net and "dim_mults" in net:
        from src.diffuir.official import size_name

        name = size_name(net["dim"], net["dim_mults"])
        return f"DiffUIR-{name}" if name else None
    return None


@register_exporter("safetensors")
def export_safetensors(model: nn.Module, source: Path, out: Path, **_) -> list[Path]:
    """``model.safetensors`` + ``config.yaml`` in ``out`` (see the module doc); each written atomically."""
    import yaml
    from safetensors.torch import save

    config, state, which = restoration_weights(model)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items() if torch.is_tensor(v)}
    # the weights replace model.init_from / init_from_official: the stored config must not point at another file
    # (it would be read again by whoever builds the model from it); where the run started from is kept as a note
    started = {k: config[k] for k in WEIGHT_INIT_ARGUMENTS if config.get(k)}
    config = without_weight_init(config)
    info = {
        "format_version": EXPORT_FORMAT_VERSION,
        "kind": type(model).__name__,
        "size": _size_name(model, config),
        "holds": describe_state(tensors),
        "parameters": parameter_count(model),
        "weights": which,
        "source_checkpoint": str(source.resolve()),
        "source_sha256": sha256_of(source) if source.is_file() else None,
        **({"initialised_from": started} if started else {}),
        "model_config": _plain(config),
    }
    out.mkdir(parents=True, exist_ok=True)
    weights = atomic_write_bytes(out / EXPORT_WEIGHTS, save(tensors, metadata={"format": "pt", "uir_suite": "1"}))
    text = ("# uir-suite export: `python -m src.restore IMAGES --ckpt <this folder> --out DIR` restores with it\n"
            + yaml.safe_dump(info, sort_keys=False))
    return [weights, atomic_write_text(out / EXPORT_CONFIG, text)]

register_exporter("onnx", importlib.import_module("src.diffuir.engines").export_onnx_checkpoint)  # DiffUIR → ONNX


# ---------------------------------------------------------------------------------------------- command line
def export(ckpt: str | Path, fmt: str, out: str | Path, overwrite: bool = False, **options) -> list[Path]:
    """Load ``ckpt`` through the suite's safe loader and write it in format ``fmt`` under ``out``.

    Everything is first written to a hidden temporary folder beside ``out`` (the suite's marked name) and then
    renamed into place whole, so a full disk or a kill leaves no half export (e.g. weights without their config).
    Usage problems (``--out`` a file, under a file, unwritable, not empty) raise :class:`ValueError`."""
    if fmt not in EXPORTERS:
        raise ValueError(f"--format {fmt}: unknown; available: {', '.join(sorted(EXPORTERS))}")
    out, ckpt = Path(out), Path(ckpt)
    check_writable_folder(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} is not empty (pass --overwrite to replace what it holds)")
    if is_export(ckpt) and out.resolve() == (ckpt if ckpt.is_dir() else ckpt.parent).resolve():
        raise ValueError(f"--out {out} is the export being read")
    model = load_restoration_model(ckpt, map_location="cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temporary_name_for(out)[0], suffix=".tmp", dir=out.parent))
    try:
        written = EXPORTERS[fmt](model, ckpt, staging, **options)
        if not out.exists():
            os.rename(staging, out)  # the whole folder at once
            return [out / Path(w).relative_to(staging) for w in written]
        placed = []
        for w in written:  # into an existing folder: renames only (no new data), after everything was written
            target = out / Path(w).relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(w, target)
            placed.append(target)
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    _load_exporter_modules()
    p = argparse.ArgumentParser(prog="python -m src.export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a suite checkpoint (.ckpt of src.train, a pipeline checkpoint) "
                                                 "or an export folder")
    p.add_argument("--format", default="safetensors", choices=sorted(EXPORTERS), help="what to write")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    args = p.parse_args(argv)
    try:
        written = export(args.ckpt, args.format, args.out, overwrite=args.overwrite)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:  # usage, or a refused / damaged model file
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # the disk: full, read-only, gone
        print(f"error: writing the export to {args.out} failed: {one_line(e)}; nothing was exported", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # a model that cannot be built from the file (after it passed the allowlist)
        print(f"error: {args.ckpt} cannot be loaded: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    print("wrote " + ", ".join(str(w) for w in written))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
