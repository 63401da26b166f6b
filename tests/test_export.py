"""`python -m src.export --format safetensors`: a folder that src.restore / src.eval load with no pickle involved.

Round trips: a tiny trained DiffUIR (EMA weights exported as the network) and a tiny Diff-Restorer pipeline
(both stages' trained parts) restore bit-identically to their checkpoints for the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from src.export import EXPORTERS, export, main, register_exporter
from src.restore import main as restore_main
from src.train import train
from src.utils.checkpoints import UnsafeCheckpointError, load_restoration_model, parameter_count, sha256_of
from tests.conftest import compose_train

FAST = ["--threads", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffuir")
    train(compose_train(["experiment=diffuir_t", "debug=default", "model.net.dim=8", "num_threads=1", "trainer=cpu",
                         "test=false", "logger=csv", "callbacks.progress_bar.refresh_rate=0",
                         "model.ema.update_after_step=0", "model.ema.update_every=1"], out))
    return out / "checkpoints" / "last.ckpt"


def _image(path, h=21, w=27):
    Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_diffuir_round_trip_restores_identically(ckpt, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["--ckpt", str(ckpt), "--format", "safetensors", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.safetensors"]
    assert out.joinpath("model.safetensors").read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
    info = yaml.safe_load((out / "config.yaml").read_text())
    original = load_restoration_model(ckpt)
    assert info["kind"] == "DiffUIRModule" and info["weights"] == "ema" and info["model_config"]["ema"] is None
    assert info["source_sha256"] == sha256_of(ckpt) and info["parameters"] == parameter_count(original)
    assert info["holds"].startswith("DiffUIR with dim 8, dim_mults [1, 1, 1, 1]")

    exported = load_restoration_model(out)
    assert exported.ema is None
    # the EMA differs from the trained weights, and the export holds the EMA
    assert not torch.equal(original.net.stem.weight, original.eval_net.stem.weight)
    assert torch.equal(exported.net.stem.weight, original.eval_net.stem.weight)
    assert type(load_restoration_model(out / "model.safetensors")) is type(exported)

    image = _image(tmp_path / "odd.png")
    for name, source in (("ckpt", ckpt), ("export", out)):
        assert restore_main([str(image), "--ckpt", str(source), "--out", str(tmp_path / name), "--seed", "3",
                             *FAST]) == 0
    a, b = (np.asarray(Image.open(tmp_path / n / "odd.png")) for n in ("ckpt", "export"))
    assert np.array_equal(a, b) and a.std() > 0
    text = capsys.readouterr().out
    assert text.count(f"{info['parameters']:,} parameters") == 2  # the same network, counted the same

    from src.evaluation.evaluator import load_model, resolve_ckpt_path

    cfg = OmegaConf.create({"model": {"_target_": "unused"}, "task_name": "t", "ckpt_path": str(out),
                            "paths": {"log_dir": str(tmp_path)}})
    assert resolve_ckpt_path(cfg) == out
    assert torch.equal(load_model(cfg, out).net.head.weight, exported.net.head.weight)


def test_an_export_of_a_fine_tuned_run_does_not_point_at_the_weights_it_started_from(ckpt, tmp_path):
    """A run started with model.init_from=<folder>: its export stores init_from as null (the weights replace it) and
    notes the folder as initialised_from, so loading it never reads that folder again (nor fails once it is gone)."""
    from src.export import export_safetensors

    model = load_restoration_model(ckpt)
    model.model_config = {**model.model_config, "init_from": str(tmp_path / "gone")}  # as in a fine-tune's ckpt
    export_safetensors(model, ckpt, tmp_path / "export")
    info = yaml.safe_load((tmp_path / "export" / "config.yaml").read_text())
    assert info["model_config"]["init_from"] is None and info["model_config"].get("init_from_official") is None
    assert info["initialised_from"] == {"init_from": str(tmp_path / "gone")}
    assert torch.equal(load_restoration_model(tmp_path / "export").net.head.weight, model.eval_net.head.weight)


def test_export_config_is_checked_like_a_checkpoint_and_bad_usage_exits_2(ckpt, tmp_path, capsys):
    out = tmp_path / "export"
    export(ckpt, "safetensors", out)
    info = yaml.safe_load((out / "config.yaml").read_text())
    marker = tmp_path / "MARKER"
    info["model_config"]["net"] = {"_target_": "pathlib.Path.write_text",
                                   "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, "x"]}
    (out / "config.yaml").write_text(yaml.safe_dump(info))
    with pytest.raises(UnsafeCheckpointError, match="pathlib.Path.write_text"):
        load_restoration_model(out)
    _image(tmp_path / "a.png")
    assert restore_main([str(tmp_path / "a.png"), "--ckpt", str(out), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert not marker.exists()
    capsys.readouterr()
    assert main(["--ckpt", str(ckpt), "--out", str(out)]) == 2  # not empty
    assert "is not empty" in capsys.readouterr().err
    assert main(["--ckpt", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "new")]) == 2
    assert "not found" in capsys.readouterr().err


def test_formats_are_a_registry():
    assert "safetensors" in EXPORTERS

    def fake(model, source, out, **options):
        return []

    register_exporter("test-format", fake)
    try:
        assert EXPORTERS["test-format"] is fake
    finally:
        del EXPORTERS["test-format"]


def _tiny_stage(experiment: str, overrides=()):
    cfg = compose_train([f"experiment={experiment}", *overrides])
    torch.manual_seed(1)
    model = instantiate(cfg.model)
    model.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    with torch.no_grad():  # trained parts away from their initialisation
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.02)
    return model


def _save_stage(model, path):
    torch.save({"state_dict": model.state_dict(), "uir_model_config": model.model_config}, path)
    return path


def test_diff_restorer_pipeline_round_trip(tmp_path):
    from src.diff_restorer.pipeline import DiffRestorerPipeline

    s1 = _save_stage(_tiny_stage("diff_restorer_stage1_tiny"), tmp_path / "s1.ckpt")
    s2 = _save_stage(_tiny_stage("diff_restorer_stage2_tiny", ["model.stage1_ckpt=null",
                                                               "model.eval_mode=reconstruction"]), tmp_path / "s2.ckpt")
    pipe = DiffRestorerPipeline.from_checkpoints(s1, s2)
    link = pipe.save(tmp_path / "pipeline.ckpt")
    out = tmp_path / "export"
    assert main(["--ckpt", str(link), "--out", str(out)]) == 0
    info = yaml.safe_load((out / "config.yaml").read_text())
    assert info["model_config"]["_target_"] == "src.diff_restorer.pipeline.DiffRestorerPipeline"
    exported = load_restoration_model(out)
    assert isinstance(exported, DiffRestorerPipeline) and not exported.weights_from_files
    assert exported.shared_clip == pipe.shared_clip
    lq = torch.rand(1, 3, 29, 31, generator=torch.Generator().manual_seed(0))
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(exported.restore(lq, steps=2, generator=g()), pipe.restore(lq, steps=2, generator=g()))
    image = _image(tmp_path / "odd.png")
    for name, source in (("ckpt", link), ("export", out)):
        assert restore_main([str(image), "--ckpt", str(source), "--out", str(tmp_path / name), "--steps", "2",
                             *FAST]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ckpt" / "odd.png")),
                          np.asarray(Image.open(tmp_path / "export" / "odd.png")))
