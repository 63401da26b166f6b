"""Diff-Restorer experiments, ablations (Tables II–IV) and sweep compose and do what they say; end-to-end run."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.diff_restorer.stage1 import DiffRestorerStage1
from src.train import train
from src.utils.checkpoints import load_model_from_checkpoint
from tests.conftest import CONF
from tests.diff_restorer.conftest import batch, build_tiny

# stage 1's (Tables II-IV); the stage-2 decoder rows of Table V (dr_decoder_*) are tested in test_stage2.py
DR_ABLATIONS = sorted(p.stem for p in (CONF / "ablation").glob("dr_*.yaml") if not p.stem.startswith("dr_decoder_"))


def test_paper_experiment_composes_with_the_paper_recipe(compose_cfg, tmp_path):
    cfg = compose_cfg(["experiment=diff_restorer_stage1", f"paths.weights_dir={tmp_path}"], tmp_path)
    m = cfg.model
    assert m._target_ == "src.diff_restorer.stage1.DiffRestorerStage1"
    assert m.unet.sd_dir == m.vae.sd_dir == f"{tmp_path}/stable-diffusion-v1-5"
    assert m.clip.model_name == "ViT-L-14-quickgelu" and m.clip.weights.startswith(str(tmp_path))
    assert (m.optimizer._target_, m.optimizer.lr) == ("torch.optim.AdamW", 1e-5)
    assert (m.lambda_deg, m.lambda_rec, m.sampling_steps, m.train_unet) == (1.0, 1.0, 20, False)
    assert dict(m.noise_schedule) == {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                                      "beta_schedule": "scaled_linear"}
    assert m.prompt_processor.degradation_dim == 256
    assert cfg.data.batch_size * cfg.trainer.devices == 16  # the paper's batch on two A100s
    assert cfg.trainer.max_steps == 100 * 80000 // 16
    assert cfg.data.patch_size == 512 and cfg.trainer.accumulate_grad_batches == 1  # the paper's 512² images
    assert cfg.data._target_.endswith("DiffRestorerDataModule") and cfg.data.samples_per_task == 10000
    with pytest.raises(Exception, match="stable-diffusion-v1-5/stable-diffusion-v1-5") as err:
        instantiate(m)  # no weights here: one clear error saying what to download and where
    assert "${paths.weights_dir}/stable-diffusion-v1-5" in str(err.value)


def _keys(node, skip=("unet", "vae", "clip")):
    if not isinstance(node, dict):
        return None
    return {k: _keys(v, ()) for k, v in node.items() if k not in skip} | {k: "backbone" for k in skip if k in node}


def test_tiny_and_paper_model_configs_differ_only_in_sizes():
    real = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "diff_restorer_stage1.yaml"))
    tiny = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "diff_restorer_stage1_tiny.yaml"))
    assert _keys(real) == _keys(tiny)
    for key in ("lambda_deg", "lambda_rec", "noise_schedule", "sampling_steps", "optimizer", "train_unet"):
        assert real[key] == tiny[key], key


def test_tiny_experiment_instantiates(compose_cfg, tmp_path):
    cfg = compose_cfg(["experiment=diff_restorer_stage1_tiny"], tmp_path)
    model = instantiate(cfg.model)
    instantiate(cfg.data)
    instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert isinstance(model, DiffRestorerStage1) and model.pad_multiple == 16


def _expected(ablation):
    full = {"semantic_branch": True, "modulation": True, "decoder": True, "null_pd": False, "l_deg": 1.0,
            "l_rec": 1.0}
    changes = {
        "dr_full": {}, "dr_no_bs": {"semantic_branch": False}, "dr_no_pd": {"null_pd": True},
        "dr_no_dmb": {"modulation": False}, "dr_no_cd": {"decoder": False},
        "dr_no_dmb_cd": {"modulation": False, "decoder": False}, "dr_no_ldeg": {"l_deg": 0.0},
        "dr_no_lrec": {"decoder": False, "l_rec": 0.0}, "dr_no_ldeg_lrec": {"decoder": False, "l_deg": 0.0,
                                                                           "l_rec": 0.0},
    }[ablation]
    return {**full, **changes}


@pytest.mark.parametrize("ablation", DR_ABLATIONS)
def test_ablation_changes_what_it_should(ablation):
    model = build_tiny([f"ablation={ablation}"])
    exp = _expected(ablation)
    pp, enc = model.prompt_processor, model.control_encoder
    got = {"semantic_branch": pp.semantic_branch and isinstance(pp.semantic, torch.nn.Sequential),
           "modulation": all(d.linear is not None for d in enc.dmbs),
           "decoder": model.control_decoder is not None,
           "null_pd": model.hparams.null_degradation_embedding,
           "l_deg": model.hparams.lambda_deg, "l_rec": model.hparams.lambda_rec}
    assert got == exp
    if not exp["modulation"]:
        assert all(d.linear is None for d in enc.dmbs)
    losses = model.compute_losses(batch(2, 32), torch.Generator().manual_seed(0))
    expected_loss = losses["l_diff"] + exp["l_deg"] * losses["l_deg"] + (losses["l_rec"] if exp["decoder"] else 0)
    torch.testing.assert_close(losses["loss"], expected_loss)
    assert ("l_rec" in losses) == exp["decoder"]
    assert pp.classifier.weight.requires_grad == (exp["l_deg"] > 0)


def test_sweep_runs_every_ablation_once(compose_cfg, tmp_path):
    cfg = compose_cfg(["sweep=diff_restorer_ablations"], tmp_path, hydra_config=True)
    listed = cfg.hydra.sweeper.params.ablation.split(",")
    assert sorted(listed) == DR_ABLATIONS and listed[0] == "dr_full" and len(listed) == 9


def test_train_end_to_end_then_reload_checkpoint(compose_cfg, tmp_path):
    """`python -m src.train experiment=diff_restorer_stage1_tiny debug=default trainer=cpu`, then the Fig. 10 CLI."""
    cfg = compose_cfg(["experiment=diff_restorer_stage1_tiny", "debug=default", "trainer=cpu"], tmp_path)
    result = train(cfg)
    tasks = {r["task"] for r in result["rows"]}
    assert "all" in tasks and len(tasks) >= 2
    for key in ("csv", "markdown", "grid"):
        assert result["paths"][key].is_file()
    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 2 and "uir_model_config" in ckpt
    assert not any(k.startswith(("unet.", "vae.", "clip.")) for k in ckpt["state_dict"])
    model = load_model_from_checkpoint(last)
    out = model.restore(torch.rand(1, 3, 29, 41), generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 29, 41) and 0 <= out.min() and out.max() <= 1

    from src.diff_restorer import tsne

    res = tsne.main(["--ckpt", str(last), "--per-task", "2", "--size", "48", "--iters", "250", "--backend", "pil",
                     "--out", str(tmp_path / "tsne.png")])
    assert res["png"].is_file() and res["tsne_clip"].shape == (16, 2)


@pytest.mark.slow
def test_ablation_sweep_as_one_multirun(tmp_path):
    """`python -m src.train --multirun ... sweep=diff_restorer_ablations`: nine runs, nine checkpoints (~1 min)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "src.train", "--multirun", "experiment=diff_restorer_stage1_tiny",
                           "debug=default", "trainer=cpu", "sweep=diff_restorer_ablations", "test=false",
                           "trainer.max_steps=1", f"hydra.sweep.dir={tmp_path}/sweep"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(runs) == 9 and all((r / "checkpoints" / "last.ckpt").is_file() for r in runs)
