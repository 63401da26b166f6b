"""Checkpoints are data: crafted files run nothing and write nothing on any entry point, and bad files are named.

Crafted files: a pickle ``__reduce__`` payload (``os.system("touch MARKER")``) inside an otherwise valid
checkpoint, and stored model configs whose ``_target_`` (or a nested one, or one reached through ``_args_`` or a
suite module's attribute) would write a file: ``pathlib.Path.write_text``, ``shutil.copy``, ``torch.save``,
``os.system``. Each payload is first shown to be live (it does write its marker when loaded the unsafe way), then
fed to every entry point: ``load_restoration_model`` (restore, app), ``src.restore`` (exit 2), ``src.eval``'s
loader, ``model.init_from_official``, training resumption (``ckpt_path``) and the Diff-Restorer pipeline builder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from src.diffuir.unet import SIZES, DiffUIRUNet
from src.restore import main as restore_main
from src.train import train
from src.utils.checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    load_restoration_model,
    read_checkpoint,
    validate_model_config,
)
from tests.conftest import ROOT, compose_train

TINY = ["experiment=diffuir_t", "model.net.dim=8"]
TRAIN = [*TINY, "debug=default", "num_threads=1", "trainer=cpu", "test=false", "logger=csv",
         "data.train_samples=4", "callbacks.progress_bar.refresh_rate=0"]


class Payload:
    """Unpickling this runs ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def raised(info, kind):
    """The suite error inside a Hydra InstantiationException (a model built by the run's own config)."""
    error = info.value
    while error is not None and not isinstance(error, kind):
        error = error.__cause__
    assert error is not None, info.value
    return error


def tiny_config() -> dict:
    return OmegaConf.to_container(compose_train(TINY).model, resolve=True)


def tiny_state(config: dict) -> dict:
    torch.manual_seed(0)
    return instantiate(config).state_dict()


def foreign_targets(marker: Path, victim: Path) -> dict[str, dict]:
    """Configs that would each write ``marker`` if instantiated."""
    return {
        "Path.write_text": {"_target_": "pathlib.Path.write_text",
                            "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, "pwned"]},
        "shutil.copy": {"_target_": "shutil.copy", "src": str(victim), "dst": str(marker)},
        "torch.save": {"_target_": "torch.save", "obj": 1, "f": str(marker)},
        "os.system": {"_target_": "os.system", "command": f"touch {marker}"},
        "via a suite module": {"_target_": "src.diffuir.official.torch.save", "obj": 1, "f": str(marker)},
        "suite file writer": {"_target_": "src.utils.atomic.atomic_write_text", "path": str(marker), "text": "x"},
    }


def crafted_configs(marker: Path, victim: Path) -> dict[str, dict]:
    """Each foreign target at the top of a stored config, and one hidden deep in an otherwise valid config."""
    out = {name: target for name, target in foreign_targets(marker, victim).items()}
    nested = tiny_config()
    nested["optimizer"] = {"_target_": "functools.partial",
                           "_args_": [foreign_targets(marker, victim)["torch.save"]]}
    out["nested in _args_"] = nested
    deep = tiny_config()
    deep["net"]["_target_"] = "shutil.copy"
    out["net replaced"] = deep
    return out


@pytest.fixture
def files(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("secret")
    return tmp_path / "MARKER", victim


def write_pickle_payload(path: Path, marker: Path, official: bool = False) -> Path:
    config = tiny_config()
    if official:
        body = {"step": 1, "ema": {"payload": Payload(marker)}}
    else:
        body = {"state_dict": tiny_state(config), "uir_model_config": config, "extra": Payload(marker)}
    torch.save(body, path)
    return path


def test_payloads_are_live_when_loaded_the_unsafe_way(files, tmp_path):
    """The crafted files really are dangerous: unsafe loading runs them (so the tests below can fail)."""
    marker, victim = files
    path = write_pickle_payload(tmp_path / "evil.ckpt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    for name, config in foreign_targets(marker, victim).items():
        if name in ("os.system", "suite file writer"):  # Hydra itself blocks os.system; the pickle runs it above
            continue
        instantiate(config)
        assert marker.exists(), name
        marker.unlink()


def test_pickled_code_is_refused_by_the_loader(files, tmp_path):
    marker, _ = files
    for official in (False, True):
        path = write_pickle_payload(tmp_path / f"evil{official}.ckpt", marker, official)
        with pytest.raises(UnsafeCheckpointError, match=r"refused: it holds pickled Python objects .*nothing in it "
                                                        r"was run"):
            load_restoration_model(path)
        with pytest.raises(UnsafeCheckpointError):
            read_checkpoint(path)
    assert not marker.exists()


def test_foreign_targets_are_refused_before_anything_is_built(files, tmp_path):
    marker, victim = files
    for name, config in crafted_configs(marker, victim).items():
        with pytest.raises(UnsafeCheckpointError, match="is refused: .*Nothing was instantiated") as info:
            validate_model_config(config)
        assert len(str(info.value)) < 400, name
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": {}, "uir_model_config": config}, path)
        with pytest.raises(UnsafeCheckpointError):
            load_restoration_model(path)
    assert not marker.exists() and victim.read_text() == "secret"
    # the suite's own configs all pass
    for experiment in ("diffuir_t", "diff_restorer_stage1_tiny", "diff_restorer_stage2_tiny", "diffuir_l"):
        overrides = [f"experiment={experiment}"] + (["model.stage1_ckpt=null", "model.eval_mode=reconstruction"]
                                                    if "stage2" in experiment else [])
        validate_model_config(OmegaConf.to_container(compose_train(overrides).model, resolve=True), experiment)


def test_restore_cli_exits_2_and_writes_nothing(files, tmp_path, capsys):
    marker, victim = files
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    cases = {"pickle": write_pickle_payload(tmp_path / "evil.ckpt", marker)}
    for name, config in crafted_configs(marker, victim).items():
        cases[name] = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": {}, "uir_model_config": config}, cases[name])
    for name, path in cases.items():
        rc = restore_main([str(tmp_path / "a.png"), "--ckpt", str(path), "--out", str(tmp_path / "out"),
                           "--threads", "1", "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and "refused" in err and len(err) < 500, (name, err)
    assert not marker.exists() and not (tmp_path / "out").exists() and victim.read_text() == "secret"


def test_eval_loader_refuses_them(files, tmp_path):
    from src.evaluation.evaluator import load_model

    marker, victim = files
    cfg = OmegaConf.create({"model": compose_train(TINY).model, "task_name": "t"})
    paths = [write_pickle_payload(tmp_path / "evil.ckpt", marker),
             write_pickle_payload(tmp_path / "official.pt", marker, official=True)]
    for name, config in crafted_configs(marker, victim).items():
        paths.append(tmp_path / f"{name}.ckpt")
        torch.save({"state_dict": {}, "uir_model_config": config}, paths[-1])
    for path in paths:
        with pytest.raises(UnsafeCheckpointError):
            load_model(cfg, path)
    assert not marker.exists() and victim.read_text() == "secret"


def test_init_from_official_refuses_pickled_code(files, tmp_path):
    marker, _ = files
    path = write_pickle_payload(tmp_path / "model-300.pt", marker, official=True)
    cfg = compose_train([*TINY, f"model.init_from_official={path}"])
    with pytest.raises(Exception) as info:  # noqa: B017 (Hydra wraps what the model's constructor raises)
        instantiate(cfg.model)
    assert "official DiffUIR checkpoint" in str(raised(info, UnsafeCheckpointError))
    assert not marker.exists()


def test_train_resume_refuses_pickled_code_and_foreign_configs(files, tmp_path):
    marker, victim = files
    evil = write_pickle_payload(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError):
        train(compose_train([*TRAIN, f"ckpt_path={evil}"], tmp_path / "run1"))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "uir_model_config": foreign_targets(marker, victim)["os.system"]}, foreign)
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        train(compose_train([*TRAIN, f"ckpt_path={foreign}"], tmp_path / "run2"))
    assert not marker.exists()
    assert not list((tmp_path / "run1").rglob("*.ckpt")) and not list((tmp_path / "run2").rglob("*.ckpt"))


def test_pipeline_builder_refuses_them(files, tmp_path):
    from src.diff_restorer.pipeline import DiffRestorerPipeline
    from src.diff_restorer.pipeline import main as pipeline_main

    marker, victim = files
    evil = write_pickle_payload(tmp_path / "evil.ckpt", marker)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "uir_model_config": foreign_targets(marker, victim)["shutil.copy"]}, foreign)
    for path in (evil, foreign):
        with pytest.raises(UnsafeCheckpointError):
            pipeline_main(["--stage1", str(path), "--out", str(tmp_path / "pipe.ckpt")])
        with pytest.raises(UnsafeCheckpointError):
            DiffRestorerPipeline.from_checkpoints(path)
    # a pipeline checkpoint naming a crafted stage file, loaded the way src.restore does
    pipe = tmp_path / "pipeline.ckpt"
    torch.save({"state_dict": {}, "uir_model_config": {
        "_target_": "src.diff_restorer.pipeline.DiffRestorerPipeline.from_checkpoints", "stage1_ckpt": str(evil)}},
        pipe)
    with pytest.raises(UnsafeCheckpointError):
        load_restoration_model(pipe)
    assert not marker.exists() and not (tmp_path / "pipe.ckpt").exists() and victim.read_text() == "secret"


# ---------------------------------------------------------------------------------------------- clear errors
def test_wrong_size_checkpoint_says_what_it_holds_and_what_is_asked(tmp_path):
    t_config = OmegaConf.to_container(compose_train(["experiment=diffuir_t"]).model, resolve=True)
    l_config = OmegaConf.to_container(compose_train(["experiment=diffuir_l"]).model, resolve=True)
    path = tmp_path / "t_as_l.ckpt"
    torch.save({"state_dict": tiny_state(t_config), "uir_model_config": l_config}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_restoration_model(path)
    text = str(info.value)
    assert ("it holds DiffUIR with dim 32, dim_mults [1, 1, 1, 1] (DiffUIR-T); the config asks for DiffUIR with "
            "dim 64, dim_mults [1, 2, 4, 8] (DiffUIR-L)") in text
    assert len(text) < 700 and text.count("\n") <= 4


def test_wrong_size_official_checkpoint_is_named(tmp_path):
    import json

    shapes = json.loads((ROOT / "tests" / "diffuir" / "data" / "official_unet_shapes.json").read_text())
    official = {"ema_model.model.unet0." + k: torch.zeros(s) for k, s in shapes["T"].items()}
    path = tmp_path / "model-300.pt"
    torch.save({"step": 1, "ema": official}, path)
    cfg = compose_train(["experiment=diffuir_s", f"model.init_from_official={path}"])
    with pytest.raises(Exception) as info:  # noqa: B017 (Hydra wraps what the model's constructor raises)
        instantiate(cfg.model)
    text = str(raised(info, CheckpointMismatchError))
    assert ("holds DiffUIR with dim 32, dim_mults [1, 1, 1, 1] (DiffUIR-T); the config asks for DiffUIR with dim 32, "
            "dim_mults [1, 2, 2, 4] (DiffUIR-S)") in text and len(text) < 500
    assert DiffUIRUNet(**SIZES["T"]).stem.weight.shape[0] == 32


def test_wrong_size_resume_is_named_before_training(tmp_path):
    train(compose_train(TRAIN, tmp_path / "a"))
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointMismatchError, match=r"holds DiffUIR with dim 8, .*asks for DiffUIR with dim 16"):
        train(compose_train([*TRAIN, "model.net.dim=16", f"ckpt_path={ckpt}"], tmp_path / "b"))


def test_bad_files_say_what_they_are(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": tiny_state(tiny_config()), "uir_model_config": tiny_config()}, good)
    data = good.read_bytes()
    cases = {
        "list.ckpt": (lambda p: torch.save([1, 2], p), "holds a list, not a checkpoint dict"),
        "empty.ckpt": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        "truncated.ckpt": (lambda p: p.write_bytes(data[: len(data) // 2]), "is truncated or damaged"),
        "text.ckpt": (lambda p: p.write_text("hello"), "is not a torch checkpoint"),
        "no_config.ckpt": (lambda p: torch.save({"state_dict": {}}, p), "has no 'uir_model_config'"),
        "no_state.ckpt": (lambda p: torch.save({"uir_model_config": tiny_config()}, p), "no 'state_dict' mapping"),
        "official.ckpt": (lambda p: torch.save({"ema": {}, "step": 1}, p), "looks like an official DiffUIR release"),
        "missing.ckpt": (lambda p: None, "checkpoint not found"),
    }
    for name, (make, message) in cases.items():
        path = tmp_path / name
        make(path)
        with pytest.raises((CheckpointError, KeyError, FileNotFoundError)) as info:
            load_restoration_model(path)
        text = info.value.args[0]
        assert message in text and len(text) < 400, (name, text)
    assert type(load_restoration_model(good)).__name__ == "DiffUIRModule"


def test_restore_cli_reports_checkpoint_errors_in_a_few_lines(tmp_path):
    """As a user sees it: `python -m src.restore` with a checkpoint of a list, exit 2, one short line."""
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "src.restore", str(tmp_path / "a.png"), "--ckpt",
                           str(tmp_path / "list.ckpt"), "--out", str(tmp_path / "out"), "--threads", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "holds a list, not a checkpoint dict" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2
