"""The stage-2 LightningModule on the tiny config: losses, G/D schedule, what is trained and saved, checkpoints,
the CLI run, and the configs of the paper's recipe and Table V."""

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from src.diff_restorer.stage2 import DiffRestorerStage2
from src.train import train
from src.utils.checkpoints import load_model_from_checkpoint
from tests.conftest import compose_train
from tests.diff_restorer.conftest import batch, build_tiny

TINY2 = ["experiment=diff_restorer_stage2_tiny"]


def build_tiny2(overrides: list[str] | None = None) -> DiffRestorerStage2:
    """The tiny stage-2 model; unless the overrides say otherwise, without stage 1 (B_d trained here) and scoring
    reconstructions (the configs require model.stage1_ckpt and score the pipeline)."""
    overrides = list(overrides or [])
    given = {o.split("=", 1)[0] for o in overrides}
    defaults = [d for d in ("model.stage1_ckpt=null", "model.eval_mode=reconstruction") if d.split("=")[0] not in given]
    cfg = compose_train([*TINY2, *defaults, *overrides])
    model = instantiate(cfg.model)
    model.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    return model


def save_ckpt(model, path):
    ckpt = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


def perturb(model, seed=0, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def _eval_losses(model, b):
    with torch.no_grad():
        return {k: float(v) for k, v in model.compute_losses(b, torch.Generator().manual_seed(1)).items()}


def _generator_steps(model, opt_g, b, key, steps, adversarial=True):
    for step in range(steps):
        rec = model.reconstruct(b["lq"], b["gt"], True, torch.Generator().manual_seed(10 + step))
        opt_g.zero_grad()
        model.generator_losses(rec, b["gt"], adversarial=adversarial)[key].backward()
        opt_g.step()


def test_each_loss_falls_in_a_few_steps():
    torch.manual_seed(0)
    lr = ["model.optimizer.lr=1e-3", "model.discriminator_optimizer.lr=1e-3"]
    model = build_tiny2(lr).train()
    b = batch(4, 32)
    before = _eval_losses(model, b)
    assert before["loss"] == pytest.approx(before["l_gen"] + 0.1 * before["l_per"] + 0.001 * before["l_adv"], rel=1e-5)
    opt_g, opt_d = model.configure_optimizers()
    assert isinstance(opt_g, torch.optim.AdamW) and isinstance(opt_d, torch.optim.AdamW)
    for step in range(6):  # Eq. 8: the decoder and the discriminator, one step each per batch (the default schedule)
        rec = model.reconstruct(b["lq"], b["gt"], True, torch.Generator().manual_seed(10 + step))
        opt_g.zero_grad()
        model.generator_losses(rec, b["gt"], adversarial=True)["loss"].backward()
        opt_g.step()
        opt_d.zero_grad()
        model.discriminator_losses(rec.detach(), b["gt"])["l_disc"].backward()
        opt_d.step()
    after = _eval_losses(model, b)
    for key in ("loss", "l_gen", "l_disc"):
        assert after[key] < before[key], (key, before, after)
    # each generator term is a working objective on its own: L_per (which the tiny random VAE/VGG trade against
    # L_gen under the joint loss: MSE pulls towards a blur) and L_adv (the generator's side of the game, against
    # a fixed discriminator)
    for key in ("l_per", "l_adv"):
        model = build_tiny2(lr).train()
        opt_g, _ = model.configure_optimizers()
        start = _eval_losses(model, b)[key]
        _generator_steps(model, opt_g, b, key, 4)
        assert _eval_losses(model, b)[key] < start, key


def test_schedule_and_trainer_alternate_generator_and_discriminator_steps():
    model = build_tiny2(["model.discriminator_every=2", "model.disc_start=1"])
    assert [model.schedule(i) for i in range(6)] == [(True, False), (True, True), (True, False), (True, True),
                                                    (True, False), (True, True)]
    every3 = build_tiny2(["model.generator_every=3"])
    assert [every3.schedule(i)[0] for i in range(4)] == [True, False, False, True]
    assert not any(build_tiny2(["model.lambda_adv=0"]).schedule(i)[1] for i in range(3))

    data = [{"lq": x["lq"][0], "gt": x["gt"][0], "task": x["task"][0]} for x in (batch(1, 32, s) for s in range(8))]
    trainer = L.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, DataLoader(data, batch_size=2))
    # 4 batches: the decoder stepped on each, the discriminator on batches 1 and 3; Lightning's global_step counts both
    assert model.train_batches == 4 and model.optimizer_steps == {"generator": 4, "discriminator": 2}
    assert trainer.global_step == 6
    opt_g, opt_d = trainer.optimizers
    assert int(next(iter(opt_d.state.values()))["step"]) == 2 and int(next(iter(opt_g.state.values()))["step"]) == 4


def test_only_decoder_degradation_branch_and_discriminator_are_trained_and_saved(tmp_path):
    model = build_tiny2()
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"decoder", "degradation_branch", "discriminator"}
    assert {k.split(".")[0] for k in model.state_dict()} == trainable
    opt_g, opt_d = model.configure_optimizers()
    assert sum(p.numel() for p in opt_g.param_groups[0]["params"]) == (
        model.parameter_counts()["decoder"] + model.parameter_counts()["degradation_branch"])
    model.train()
    assert not (model.vae.training or model.clip.training) and model.decoder.training

    # P_D from a stage-1 checkpoint: B_d read from it and frozen (still saved, so stage 2 rebuilds without it)
    stage1 = build_tiny()
    perturb(stage1)
    s1 = save_ckpt(stage1, tmp_path / "s1.ckpt")
    with_s1 = build_tiny2([f"model.stage1_ckpt={s1}"])
    assert all(torch.equal(a, b) for a, b in zip(with_s1.degradation_branch.state_dict().values(),
                                                  stage1.prompt_processor.degradation.state_dict().values()))
    assert not any(p.requires_grad for p in with_s1.degradation_branch.parameters())
    lq = torch.rand(2, 3, 32, 32)
    assert torch.equal(with_s1.degradation_embedding(lq), stage1.visual_prompts(lq)["p_d"])
    assert {k.split(".")[0] for k in with_s1.state_dict()} == trainable
    ckpt = {}
    with_s1.on_save_checkpoint(ckpt)
    assert ckpt["uir_model_config"]["init_degradation_from_stage1"] is False
    assert ckpt["uir_model_config"]["train_degradation_branch"] is False
    with pytest.raises(Exception, match="stage-1 checkpoint not found"):  # hydra wraps the FileNotFoundError
        build_tiny2([f"model.stage1_ckpt={tmp_path / 'nope.ckpt'}"])
    with pytest.raises(Exception, match="stage1_ckpt"):
        build_tiny2(["model.eval_mode=pipeline"])


def test_checkpoint_round_trip_rebuilds_identical_model(tmp_path):
    model = build_tiny2()
    perturb(model)
    path = save_ckpt(model, tmp_path / "m.ckpt")
    lq, hq = torch.rand(2, 3, 37, 41), torch.rand(2, 3, 37, 41)
    expected = model.eval().restore(lq, hq=hq)
    assert expected.shape == lq.shape and 0 <= expected.min() and expected.max() <= 1
    for loaded in (load_model_from_checkpoint(path), DiffRestorerStage2.from_checkpoint(path)):
        assert torch.equal(loaded.restore(lq, hq=hq), expected)
    assert not torch.equal(build_tiny2().eval().restore(lq, hq=hq), expected)
    state = dict(torch.load(path, weights_only=True)["state_dict"])
    state.pop(next(iter(state)))
    with pytest.raises(RuntimeError, match="missing keys"):
        build_tiny2().load_state_dict(state)
    with pytest.raises(RuntimeError, match="DiffRestorerPipeline"):
        model.restore(lq)  # a decoder alone cannot restore an LQ image


def test_validation_scores_the_reconstruction_of_the_hq_image():
    model = build_tiny2().eval()
    perturb(model)
    b = batch(2, 32)
    model.on_validation_epoch_start()
    model.validation_step(b, 0)
    from src.metrics.fidelity import batch_psnr_ssim

    psnr, _ = batch_psnr_ssim(model.restore(b["lq"], hq=b["gt"]), b["gt"])
    assert [r["psnr_out"] for r in model._eval_records] == pytest.approx(list(psnr))
    assert model._eval_reference is None


@pytest.fixture(scope="module")
def stage1_ckpt(tmp_path_factory):
    """A (perturbed) tiny stage-1 checkpoint, as stage 2 requires."""
    stage1 = build_tiny()
    perturb(stage1)
    return save_ckpt(stage1, tmp_path_factory.mktemp("s1") / "s1.ckpt")


def test_stage1_checkpoint_is_required_with_a_clear_error(tmp_path):
    from src.train import UsageError

    with pytest.raises(UsageError, match=r"model\.stage1_ckpt: .*train stage 1 first"):
        train(compose_train([*TINY2, "debug=default", "trainer=cpu"], tmp_path))
    assert not (tmp_path / "checkpoints").exists()


def test_train_cli_runs_end_to_end(tmp_path, stage1_ckpt):
    result = train(compose_train([*TINY2, "debug=default", "trainer=cpu", "model.sampling_steps=2",
                                  f"model.stage1_ckpt={stage1_ckpt}"], tmp_path))
    assert {r["task"] for r in result["rows"]} >= {"all"}
    # the test restored LQ images through stage 1 + this decoder, and its table says so
    assert "restoration through the whole pipeline" in result["paths"]["markdown"].read_text()
    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["diff_restorer_stage2"]["optimizer_steps"] == {"generator": 1, "discriminator": 1}
    assert {k.split(".")[0] for k in ckpt["state_dict"]} == {"decoder", "degradation_branch", "discriminator"}
    model = load_model_from_checkpoint(last)
    assert isinstance(model, DiffRestorerStage2) and model.train_batches == 0  # (only resume restores the counter)
    assert not model.hparams.train_degradation_branch  # B_d came from stage 1, frozen


def test_reconstruction_test_table_is_labelled_as_such(tmp_path):
    result = train(compose_train([*TINY2, "debug=default", "trainer=cpu", "model.stage1_ckpt=null",
                                  "model.eval_mode=reconstruction", "train=false"], tmp_path))
    text = result["paths"]["markdown"].read_text()
    assert "reconstruction of I_HQ from E(I_HQ)" in text and "not a restoration" in text


def test_consistency_decoder_row_is_reported_as_not_run_without_weights(tmp_path, stage1_ckpt):
    result = train(compose_train([*TINY2, "debug=default", "trainer=cpu", "ablation=dr_decoder_consistency",
                                  f"model.stage1_ckpt={stage1_ckpt}", f"paths.weights_dir={tmp_path}/weights"],
                                 tmp_path))
    text = result["paths"]["not_run"].read_text()
    assert "not run" in text and f"{tmp_path}/weights/consistency-decoder" in text


def test_configs_hold_the_papers_recipe_and_table5():
    cfg = compose_train(["experiment=diff_restorer_stage2"])
    m = cfg.model
    assert (m.lambda_per, m.lambda_adv) == (0.1, 0.001)
    assert m.optimizer._target_ == "torch.optim.AdamW" and m.optimizer.lr == 1e-5
    assert cfg.data.batch_size == 4 and cfg.trainer.max_epochs == 25 and m.decoder.refinement
    assert cfg.data.patch_size == 512 and cfg.data._target_.endswith("DiffRestorerDataModule")  # the paper's data
    assert OmegaConf.is_missing(m, "stage1_ckpt") and m.eval_mode == "pipeline"  # stage 1 first, scored whole
    assert m.vae.sd_dir.endswith("stable-diffusion-v1-5") and m.perceptual.weights.endswith("vgg19-dcbaabe7.pth")
    with pytest.raises(FileNotFoundError, match="vgg19-dcbaabe7.pth"):
        instantiate(m.perceptual)()
    rows = {"dr_decoder_sd": (False, False), "dr_decoder_no_drb": (True, False), "dr_decoder_full": (True, True)}
    for name, (trains, refinement) in rows.items():
        c = compose_train(["experiment=diff_restorer_stage2", f"ablation={name}"])
        assert c.train == trains and c.model.decoder.refinement == refinement
    c = compose_train(["experiment=diff_restorer_stage2", "ablation=dr_decoder_consistency"])
    assert not c.train and c.model.decoder._target_.endswith("ConsistencyDecoder")
    sweep = OmegaConf.load(compose_train.__globals__["CONF"] / "sweep" / "diff_restorer_table5.yaml")
    assert sweep.hydra.sweeper.params.ablation.split(",") == ["dr_decoder_sd", "dr_decoder_consistency",
                                                             "dr_decoder_no_drb", "dr_decoder_full"]
    assert sweep.model.eval_mode == "pipeline"


def test_tiny_and_paper_stage2_configs_differ_only_in_sizes():
    conf = compose_train.__globals__["CONF"] / "model"
    real = OmegaConf.to_container(OmegaConf.load(conf / "diff_restorer_stage2.yaml"))
    tiny = OmegaConf.to_container(OmegaConf.load(conf / "diff_restorer_stage2_tiny.yaml"))
    assert real.keys() == tiny.keys()
    for key in ("lambda_per", "lambda_adv", "adversarial_loss", "optimizer", "discriminator_optimizer", "decoder",
                "stage1_ckpt", "eval_mode", "sampling_steps", "latent_sample", "disc_start"):
        assert real[key] == tiny[key], key
    assert real["perceptual"]["layer_weights"] == tiny["perceptual"]["layer_weights"]
