"""The whole tiny Diff-Restorer: stage-1 sampling decoded by the stage-2 decoder, as an API, a pipeline checkpoint,
and through src.restore / src.eval's loader."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from src.diff_restorer.pipeline import DiffRestorerPipeline
from src.diff_restorer.pipeline import main as pipeline_main
from src.utils.checkpoints import load_model_from_checkpoint
from tests.diff_restorer.conftest import build_tiny
from tests.diff_restorer.test_stage2 import build_tiny2, perturb, save_ckpt


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    stage1, stage2 = build_tiny(), build_tiny2()
    perturb(stage1)
    perturb(stage2, seed=1)  # DRBs away from their identity initialisation
    return {"stage1": save_ckpt(stage1, root / "s1.ckpt"), "stage2": save_ckpt(stage2, root / "s2.ckpt"),
            "fresh2": save_ckpt(build_tiny2(), root / "fresh2.ckpt"), "root": root}


@pytest.fixture(scope="module")
def pipe(ckpts):
    return DiffRestorerPipeline.from_checkpoints(ckpts["stage1"], ckpts["stage2"])


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_restores_odd_sizes_and_batches_to_the_same_size(pipe):
    assert pipe.shared_clip and pipe.sampling_steps == 20 and pipe.pad_multiple == 16
    for shape in [(1, 3, 37, 53), (2, 3, 30, 45), (1, 3, 7, 9)]:
        lq = torch.rand(*shape)
        out = pipe.restore(lq, steps=3, generator=_g())
        assert out.shape == shape and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    one = torch.rand(3, 19, 23)
    assert pipe.restore(one, steps=2, generator=_g()).shape == one.shape  # a single C×H×W image
    lq = torch.rand(1, 3, 33, 35)
    assert torch.equal(pipe.restore(lq, steps=3, generator=_g(4)), pipe.restore(lq, steps=3, generator=_g(4)))
    names = pipe.detect_degradation(torch.rand(2, 3, 40, 40))
    assert len(names) == 2 and set(names) <= set(pipe.task_names)


def test_decoder_is_used_and_an_untrained_one_equals_the_sd_decoder(ckpts, pipe):
    lq = torch.rand(2, 3, 37, 41)
    ours_s = DiffRestorerPipeline.from_checkpoints(ckpts["stage1"])  # no stage 2: the SD VAE decoder
    expected = ours_s.stage1.restore(lq, steps=3, generator=_g(7))
    assert torch.equal(ours_s.restore(lq, steps=3, generator=_g(7)), expected)
    fresh = DiffRestorerPipeline.from_checkpoints(ckpts["stage1"], ckpts["fresh2"])
    assert torch.equal(fresh.restore(lq, steps=3, generator=_g(7)), expected)  # DRBs start as the identity
    assert not torch.equal(pipe.restore(lq, steps=3, generator=_g(7)), expected)


def test_pipeline_checkpoint_for_src_restore_and_src_eval(ckpts, pipe, tmp_path):
    link = tmp_path / "pipeline.ckpt"
    assert pipeline_main(["--stage1", str(ckpts["stage1"]), "--stage2", str(ckpts["stage2"]), "--out", str(link)]) == 0
    assert torch.load(link, weights_only=True)["state_dict"] == {}
    lq = torch.rand(1, 3, 29, 31)
    loaded = load_model_from_checkpoint(link)
    assert isinstance(loaded, DiffRestorerPipeline)
    assert torch.equal(loaded.restore(lq, steps=3, generator=_g(2)), pipe.restore(lq, steps=3, generator=_g(2)))

    from src.evaluation.evaluator import load_model

    cfg = OmegaConf.create({"model": {"_target_": "unused"}, "task_name": "t"})
    assert isinstance(load_model(cfg, link), DiffRestorerPipeline)

    from src.restore import main as restore_main

    image = tmp_path / "in" / "odd.png"
    image.parent.mkdir()
    Image.fromarray((np.random.default_rng(0).random((21, 27, 3)) * 255).astype(np.uint8)).save(image)
    assert restore_main([str(image), "--ckpt", str(link), "--out", str(tmp_path / "out"), "--steps", "2",
                         "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "out" / "odd.png").size == (27, 21)


def test_stage2_pipeline_eval_mode_restores_lq(ckpts):
    model = build_tiny2([f"model.stage1_ckpt={ckpts['stage1']}", "model.eval_mode=pipeline",
                         "model.sampling_steps=2"]).eval()
    assert model.stage1 is not None and not any(k.startswith("stage1.") for k in model.state_dict())
    lq = torch.rand(1, 3, 21, 19)
    out = model.restore(lq, generator=_g())
    assert out.shape == lq.shape
    model.on_validation_epoch_start()
    model.validation_step({"lq": lq, "gt": lq, "task": torch.tensor([0])}, 0)  # scores the restoration of lq
    assert len(model._eval_records) == 1
