"""Diff-Restorer stage 2 (paper §III-D, §III-E Eq. 8, Fig. 6): training the Degradation-aware Decoder.

The frozen SD VAE encoder gives z_0 = E(I_HQ) (a posterior sample by default) and the LQ image's features
z^lq_1..3; the decoder (SD decoder + DRBs, :mod:`src.diff_restorer.decoder`) reconstructs I_HQ from z_0, z^lq and
P_D, trained with L_dec = L_gen + λ3·L_per + λ4·L_adv (λ3 = 0.1, λ4 = 0.001): L_gen the MSE to I_HQ, L_per VGG-19
features (:mod:`~src.diff_restorer.perceptual_loss`), L_adv a PatchGAN (:mod:`~src.diff_restorer.discriminator`).
Generator (decoder) and discriminator have their own AdamW optimisers, stepped in Lightning's manual optimisation.
Stage 1 is not needed: z_0 comes from the encoder, as in the paper's Fig. 6.

Where P_D comes from (the paper: the Visual Prompt Processor's degradation branch B_d on CLIP(I_LQ)): this module
holds its own frozen CLIP image encoder and a B_d of the same shape as stage 1's.

* ``stage1_ckpt`` given: B_d is read from that stage-1 checkpoint and frozen, so the decoder learns on exactly the
  P_D it will get in the pipeline (the paper's setting, as we read it);
* otherwise B_d is trained with the decoder, from scratch, by L_dec alone: stage 2 then trains without any stage-1
  result, and the pipeline feeds the decoder this module's own B_d (never stage 1's), so training and inference
  agree either way.

Validation / test (RestorationEvalMixin): ``eval_mode="pipeline"`` (the configs' default; needs ``stage1_ckpt``)
scores the whole restoration from the LQ image: stage-1 UniPC sampling, decoded by this decoder (Table V).
``eval_mode="reconstruction"`` has the decoder reconstruct the batch's HQ image from E(I_HQ) (posterior mean) with
the LQ image's features and P_D — the task it is trained on (``restore(lq, hq=...)``; inside validation the batch's
``gt``); its test table is titled as such (:attr:`DiffRestorerStage2.test_description`), never as a restoration.
The configs require ``model.stage1_ckpt`` (``???``): the paper's stage 2 learns on stage 1's P_D.
Restoring images from LQ alone is :class:`~src.diff_restorer.pipeline.DiffRestorerPipeline`'s job.

Checkpoints hold the decoder, B_d and the discriminator (to resume) and the model config; the frozen VAE, CLIP and
VGG are re-read from their files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from src.diff_restorer.decoder import encode_with_features
from src.diff_restorer.discriminator import discriminator_loss, generator_adversarial_loss
from src.diff_restorer.partial_state import PartialStateDictMixin
from src.diff_restorer.prompt_processor import mlp
from src.diff_restorer.stage1 import DiffRestorerStage1, _build
from src.evaluation.mixin import RestorationEvalMixin
from src.tasks import TASKS
from src.utils.checkpoints import StoredConfigMixin, read_checkpoint
from src.utils.padding import pad_to_multiple

STAGE1_DEGRADATION_PREFIX = "prompt_processor.degradation."


def load_stage1_degradation_branch(path: str | Path) -> dict[str, torch.Tensor]:
    """B_d's weights (``prompt_processor.degradation.*``) from a stage-1 checkpoint, prefix removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stage-1 checkpoint not found: {path} (model.stage1_ckpt; train one with "
                                "`python -m src.train experiment=diff_restorer_stage1`, or set it to null to train "
                                "stage 2 with its own degradation branch)")
    state = read_checkpoint(path, what="stage-1 checkpoint").get("state_dict") or {}  # weights-only
    out = {k[len(STAGE1_DEGRADATION_PREFIX):]: v for k, v in state.items() if k.startswith(STAGE1_DEGRADATION_PREFIX)}
    if not out:
        raise KeyError(f"{path} holds no {STAGE1_DEGRADATION_PREFIX}* weights: not a Diff-Restorer stage-1 checkpoint")
    return out


def check_stages_fit(stage1: nn.Module, stage2: nn.Module | None) -> None:
    """Refuse a stage-2 decoder whose VAE scale differs from the latents stage 1 samples."""
    if stage2 is not None and stage2.vae_factor != stage1.vae_factor:
        raise ValueError(f"stage 1 samples latents for a ×{stage1.vae_factor} VAE, the stage-2 decoder decodes "
                         f"×{stage2.vae_factor}")


@torch.no_grad()
def restore_with_stages(stage1: nn.Module, stage2: nn.Module | None, lq: torch.Tensor, steps: int | None = None,
                        generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
    """The whole Diff-Restorer restoration (§III): visual prompts of I_LQ, stage-1 UniPC sampling of the latents, then
    the stage-2 Degradation-aware Decoder (P_D from stage 2's B_d, on stage 1's CLIP embedding when both stages share
    one encoder), or without ``stage2`` the SD VAE decoder ("Ours_S"). B×3×H×W in [0, 1], cropped to ``lq``'s size;
    ``callback(done, total)`` after each sampling step."""
    h, w = lq.shape[-2:]
    prompts = stage1.visual_prompts(lq)
    z, lq_p = stage1.sample_latents(lq, steps, generator, prompts=prompts, callback=callback)
    if stage2 is None:
        image = stage1.vae.decode(z, return_dict=False)[0]
    else:
        p_d = stage2.degradation_embedding(lq, p_clip=prompts["p_clip"] if stage2.clip is stage1.clip else None)
        image = stage2.decode(z.to(stage2.dtype), lq_p, p_d, generator)
    return ((image.float() + 1) / 2).clamp(0, 1)[..., :h, :w]


class DiffRestorerStage2(PartialStateDictMixin, StoredConfigMixin, RestorationEvalMixin, L.LightningModule):
    """Frozen SD VAE encoder + trained Degradation-aware Decoder, L_dec = L_gen + λ3·L_per + λ4·L_adv.

    Args:
        vae: the SD-1.5 ``AutoencoderKL`` (frozen; its decoder initialises ``decoder``).
        clip: a :class:`~src.diff_restorer.clip_encoder.CLIPImageEncoder` (frozen), for P_D.
        decoder: factory ``(vae, degradation_dim) -> decoder`` (:class:`~src.diff_restorer.decoder.
            DegradationAwareDecoder`, or :class:`~src.diff_restorer.decoder.ConsistencyDecoder`), or a module.
        discriminator: the PatchGAN (module or factory without arguments).
        perceptual: factory of the VGG-19 loss, built when first needed (so inference needs no VGG file).
        optimizer, discriminator_optimizer: factories taking ``params`` (AdamW 1e-5 both by default).
        degradation_dim, degradation_negative_slope: shape of B_d (must match stage 1's when loading it).
        stage1_ckpt: a stage-1 checkpoint to take B_d from (frozen), and for ``eval_mode="pipeline"``.
        train_degradation_branch: None: trained iff B_d is not taken from ``stage1_ckpt``.
        lambda_per, lambda_adv: λ3, λ4 of Eq. 8 (0.1, 0.001).
        adversarial_loss: ``hinge`` (LDM/taming, followed by [51]) or ``vanilla`` (pix2pix).
        disc_start: training batches before the discriminator (and L_adv) start.
        generator_every, discriminator_every: the generator steps on batches ``i % generator_every == 0``, the
            discriminator on batches ``(i − disc_start) % discriminator_every == 0`` from ``disc_start`` on.
        latent_sample: train on a posterior sample of E(I_HQ) (else its mean).
        eval_mode: ``reconstruction`` or ``pipeline`` (see the module doc).
        sampling_steps: UniPC steps of the pipeline evaluation.
    """

    def __init__(
        self,
        vae: nn.Module,
        clip: nn.Module,
        decoder: Callable | nn.Module,
        discriminator: Callable | nn.Module,
        perceptual: Callable | nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        discriminator_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        degradation_dim: int = 256,
        degradation_negative_slope: float = 0.01,
        stage1_ckpt: str | None = None,
        init_degradation_from_stage1: bool = True,
        train_degradation_branch: bool | None = None,
        lambda_per: float = 0.1,
        lambda_adv: float = 0.001,
        adversarial_loss: str = "hinge",
        disc_start: int = 0,
        generator_every: int = 1,
        discriminator_every: int = 1,
        latent_sample: bool = True,
        eval_mode: str = "reconstruction",
        sampling_steps: int = 20,
        grid_samples: int = 8,
        task_names: list[str] | None = None,
    ):
        super().__init__()
        if eval_mode not in ("reconstruction", "pipeline"):
            raise ValueError(f"eval_mode must be 'reconstruction' or 'pipeline', not {eval_mode!r}")
        if eval_mode == "pipeline" and not stage1_ckpt:
            raise ValueError("eval_mode=pipeline restores LQ images with stage 1 + this decoder: pass "
                             "model.stage1_ckpt=<stage-1 checkpoint>")
        from_stage1 = bool(stage1_ckpt) and init_degradation_from_stage1
        if train_degradation_branch is None:
            train_degradation_branch = not from_stage1
        self.save_hyperparameters(ignore=["vae", "clip", "decoder", "discriminator", "perceptual", "optimizer",
                                          "discriminator_optimizer"], logger=False)
        self.hparams.train_degradation_branch = train_degradation_branch  # resolved value
        self.automatic_optimization = False
        self.optimizer_factory = optimizer
        self.discriminator_optimizer_factory = discriminator_optimizer or optimizer
        self.task_names = list(task_names or TASKS)
        self.vae, self.clip = vae, clip
        self.vae.requires_grad_(False)
        self.clip.requires_grad_(False)
        self.degradation_branch = mlp([clip.embed_dim, degradation_dim, degradation_dim], degradation_negative_slope)
        if from_stage1:
            self.degradation_branch.load_state_dict(load_stage1_degradation_branch(stage1_ckpt))
        self.degradation_branch.requires_grad_(train_degradation_branch)
        self.decoder = decoder if isinstance(decoder, nn.Module) else decoder(vae=vae, degradation_dim=degradation_dim)
        self.discriminator = _build(discriminator)
        self._perceptual = None if isinstance(perceptual, nn.Module) else perceptual  # factory, built when needed
        self.perceptual: nn.Module | None = perceptual if isinstance(perceptual, nn.Module) else None
        self.stage1: nn.Module | None = None
        if eval_mode == "pipeline":
            self.stage1 = DiffRestorerStage1.from_checkpoint(stage1_ckpt).requires_grad_(False)
        names = ["discriminator"] + ["decoder"] * bool(getattr(self.decoder, "trainable", True))
        self.trainable_prefixes = tuple(f"{n}." for n in names)
        self.saved_prefixes = (*self.trainable_prefixes, "degradation_branch.")
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.pad_multiple = self.vae_factor
        if self.stage1 is not None:
            check_stages_fit(self.stage1, self)
        self.latent_scale = float(vae.config.scaling_factor)
        self.train_batches = 0  # training batches seen (G/D schedule); saved in checkpoints
        self.optimizer_steps = {"generator": 0, "discriminator": 0}
        self._eval_reference: torch.Tensor | None = None
        self._eval_records: list[dict] = []
        self._grid: list[torch.Tensor] | None = None
        self.test_rows: list[dict] = []

    # ------------------------------------------------------------------ frozen parts, checkpoints
    @property
    def available(self) -> bool:
        """False when the decoder could not be built (the Consistency Decoder without its weights)."""
        return bool(getattr(self.decoder, "available", True))

    @property
    def not_run_reason(self) -> str | None:
        return None if self.available else getattr(self.decoder, "reason", "decoder unavailable")

    @property
    def test_description(self) -> str:
        """What the test table scores (its title)."""
        if self.hparams.eval_mode == "pipeline":
            return "LQ input vs its restoration through the whole pipeline (stage-1 UniPC sampling + this decoder)"
        return ("reconstruction of I_HQ from E(I_HQ) with the LQ features and P_D (the decoder sees the HQ latent: "
                "not a restoration of the LQ input)")

    def frozen_modules(self) -> list[nn.Module]:
        mods = [self.vae, self.clip] + [m for m in (self.perceptual, self.stage1) if m is not None]
        if not self.hparams.train_degradation_branch:
            mods.append(self.degradation_branch)
        return mods

    def stored_config(self) -> dict | None:
        """The model config for the checkpoint: B_d is in the state dict, so it is not re-read from stage 1."""
        if self.model_config is None:
            return None
        config = dict(self.model_config)
        config["init_degradation_from_stage1"] = False
        config["train_degradation_branch"] = bool(self.hparams.train_degradation_branch)
        return config

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)  # the stored config
        checkpoint["diff_restorer_stage2"] = {"train_batches": self.train_batches,
                                              "optimizer_steps": dict(self.optimizer_steps)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("diff_restorer_stage2", {})
        self.train_batches = int(state.get("train_batches", 0))
        self.optimizer_steps.update(state.get("optimizer_steps", {}))

    @classmethod
    def edit_stored_config(cls, config: dict, sd_dir: str | Path | None = None, clip_weights: str | Path | None = None,
                           eval_mode: str | None = None) -> None:
        """``from_checkpoint(path, sd_dir=..., clip_weights=..., eval_mode=...)``: stage 1's replacements of the frozen
        files, and ``eval_mode`` overriding the stored one (``reconstruction`` needs no stage-1 checkpoint)."""
        DiffRestorerStage1.edit_stored_config(config, sd_dir, clip_weights)
        if eval_mode is not None:
            config["eval_mode"] = eval_mode
            if eval_mode == "reconstruction":
                config["stage1_ckpt"] = None

    # ------------------------------------------------------------------ the network
    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad bottom/right to a multiple of ``pad_multiple`` (cropped back after decoding)."""
        return pad_to_multiple(x, self.pad_multiple)[0]

    def degradation_embedding(self, lq: torch.Tensor | None = None, p_clip: torch.Tensor | None = None):
        """P_D = B_d(CLIP(I_LQ)) (or of a given P_CLIP)."""
        p_clip = self.clip(lq) if p_clip is None else p_clip
        return self.degradation_branch(p_clip.to(self.degradation_branch[0].weight.dtype))

    @torch.no_grad()
    def lq_features(self, lq_padded: torch.Tensor) -> list[torch.Tensor]:
        """z^lq_1..3: the frozen encoder's features of the (padded) LQ image in [0, 1]."""
        return encode_with_features(self.vae, lq_padded * 2 - 1)[1]

    @torch.no_grad()
    def encode_hq(self, hq_padded: torch.Tensor, sample: bool, generator: torch.Generator | None = None):
        """z_0 = E(I_HQ) on the VAE's own scale (what ``vae.decode`` takes): a posterior sample or its mean."""
        posterior = self.vae.encode(hq_padded * 2 - 1).latent_dist
        return posterior.sample(generator) if sample else posterior.mode()

    def decode(self, z: torch.Tensor, lq_padded: torch.Tensor, p_d: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """The decoder's image in [−1, 1] of latents ``z`` (VAE scale) given the padded LQ image and P_D."""
        feats = self.lq_features(lq_padded) if getattr(self.decoder, "drbs", None) is not None else None
        if getattr(self.decoder, "trainable", True):
            return self.decoder(z, feats, p_d)
        return self.decoder(z, feats, p_d, generator=generator)

    def reconstruct(self, lq: torch.Tensor, hq: torch.Tensor, sample: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """I_GEN in [−1, 1] at the padded size: decode E(I_HQ) with the LQ features and P_D."""
        p_d = self.degradation_embedding(lq)
        lq_p, hq_p = self.pad(lq), self.pad(hq)
        return self.decode(self.encode_hq(hq_p, sample, generator), lq_p, p_d, generator)

    # ------------------------------------------------------------------ losses
    def perceptual_loss_module(self) -> nn.Module:
        if self.perceptual is None:
            self.perceptual = self._perceptual().to(self.device)
        return self.perceptual

    def generator_losses(self, rec: torch.Tensor, gt: torch.Tensor, adversarial: bool) -> dict[str, torch.Tensor]:
        """L_gen (MSE on the [−1, 1] scale), L_per, L_adv (through a frozen D) and their Eq. 8 sum."""
        target = gt * 2 - 1
        out = {"l_gen": F.mse_loss(rec.float(), target.float())}
        out["l_per"] = self.perceptual_loss_module()(((rec.float() + 1) / 2), gt.float())
        loss = out["l_gen"] + self.hparams.lambda_per * out["l_per"]
        if adversarial and self.hparams.lambda_adv > 0:
            self.discriminator.requires_grad_(False)
            try:
                out["l_adv"] = generator_adversarial_loss(self.discriminator(rec), self.hparams.adversarial_loss)
            finally:
                self.discriminator.requires_grad_(True)
            loss = loss + self.hparams.lambda_adv * out["l_adv"]
        out["loss"] = loss
        return out

    def discriminator_losses(self, rec: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        logits_real = self.discriminator(gt * 2 - 1)
        logits_fake = self.discriminator(rec.detach())
        return {"l_disc": discriminator_loss(logits_real, logits_fake, self.hparams.adversarial_loss),
                "logits_real": logits_real.detach().mean(), "logits_fake": logits_fake.detach().mean()}

    def schedule(self, batch_index: int) -> tuple[bool, bool]:
        """(generator steps, discriminator steps) on training batch ``batch_index`` (0-based)."""
        hp = self.hparams
        gen = batch_index % hp.generator_every == 0
        disc = (hp.lambda_adv > 0 and batch_index >= hp.disc_start
                and (batch_index - hp.disc_start) % hp.discriminator_every == 0)
        return gen, disc

    def compute_losses(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """All losses on a batch (G's with L_adv, and D's), without stepping: for tests and logging."""
        lq, gt = batch["lq"], batch["gt"]
        h, w = gt.shape[-2:]
        rec = self.reconstruct(lq, gt, self.hparams.latent_sample, generator)[..., :h, :w]
        out = self.generator_losses(rec, gt, adversarial=True)
        out.update(self.discriminator_losses(rec, gt))
        return out

    # ------------------------------------------------------------------ training (manual optimisation)
    def configure_optimizers(self):
        if not getattr(self.decoder, "trainable", True):
            raise RuntimeError(f"{type(self.decoder).__name__} is not trainable: run this config with train=false")
        gen_params = [p for n, p in self.named_parameters()
                      if p.requires_grad and n.startswith(("decoder.", "degradation_branch."))]
        opt_g = self.optimizer_factory(params=gen_params)
        opt_d = self.discriminator_optimizer_factory(params=list(self.discriminator.parameters()))
        return [opt_g, opt_d]

    def on_fit_start(self) -> None:
        self.perceptual_loss_module()  # on the right device, and a missing VGG file fails before the first step

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        do_gen, do_disc = self.schedule(self.train_batches)
        adversarial = self.hparams.lambda_adv > 0 and self.train_batches >= self.hparams.disc_start
        lq, gt = batch["lq"], batch["gt"]
        h, w = gt.shape[-2:]
        bs = gt.shape[0]
        with torch.set_grad_enabled(do_gen):
            rec = self.reconstruct(lq, gt, self.hparams.latent_sample)[..., :h, :w]
        if do_gen:
            losses = self.generator_losses(rec, gt, adversarial)
            if not torch.isfinite(losses["loss"]):
                raise FloatingPointError(f"Diff-Restorer stage-2 loss became {losses['loss'].item()} at batch "
                                         f"{self.train_batches}")
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(losses["loss"])
            opt_g.step()
            self.optimizer_steps["generator"] += 1
            self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
            for key in ("l_gen", "l_per", "l_adv"):
                if key in losses:
                    self.log(f"train/{key}", losses[key], batch_size=bs)
        if do_disc:
            d = self.discriminator_losses(rec, gt)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d["l_disc"])
            opt_d.step()
            self.optimizer_steps["discriminator"] += 1
            self.log("train/l_disc", d["l_disc"], prog_bar=True, batch_size=bs)
            self.log("train/logits_real", d["logits_real"], batch_size=bs)
            self.log("train/logits_fake", d["logits_fake"], batch_size=bs)
        self.train_batches += 1

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: dict, stage: str) -> None:
        if not self.available:
            return
        self._eval_reference = batch["gt"] if self.hparams.eval_mode == "reconstruction" else None
        try:
            super()._eval_step(batch, stage)
        finally:
            self._eval_reference = None

    @torch.no_grad()
    def restore(self, lq: torch.Tensor, steps: int | None = None, generator: torch.Generator | None = None,
                hq: torch.Tensor | None = None) -> torch.Tensor:
        """B×3×H×W in [0, 1]. With ``hq`` (or inside validation/test in ``reconstruction`` mode): the decoder's
        reconstruction of ``hq`` from E(hq) with ``lq``'s features and P_D. In ``pipeline`` mode without ``hq``:
        the whole restoration of ``lq`` (stage-1 sampling, this decoder)."""
        hq = self._eval_reference if hq is None else hq
        if hq is None:
            if self.stage1 is None:
                raise RuntimeError("a stage-2 model alone reconstructs HQ images (restore(lq, hq=...)); to restore "
                                   "LQ images combine it with stage 1: DiffRestorerPipeline.from_checkpoints(stage1_"
                                   "ckpt, stage2_ckpt), or `python -m src.diff_restorer.pipeline --stage1 ... "
                                   "--stage2 ... --out pipeline.ckpt` for src.restore / src.eval")
            return restore_with_stages(self.stage1, self, lq, steps or self.hparams.sampling_steps, generator)
        h, w = lq.shape[-2:]
        image = self.reconstruct(lq, hq, sample=False, generator=generator)
        return ((image.float() + 1) / 2).clamp(0, 1)[..., :h, :w]

    def on_test_epoch_end(self) -> None:
        if self.available:
            super().on_test_epoch_end()
        else:
            self.test_rows = []

    def save_test_report(self, out_dir: str | Path, title: str = "held-out set") -> dict[str, Path]:
        if self.available:
            return super().save_test_report(out_dir, title)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "NOT_RUN.md"
        path.write_text(f"# {title}: not run\n\n{self.not_run_reason}\n")
        print(f"NOT RUN: {self.not_run_reason}")
        return {"not_run": path}

    # ------------------------------------------------------------------ bookkeeping
    def parameter_counts(self) -> dict[str, int]:
        counts = {name: sum(p.numel() for p in m.parameters()) for name, m in self.named_children()
                  if name not in ("stage1",)}
        drbs = getattr(self.decoder, "drbs", None)
        counts["decoder_drbs"] = sum(p.numel() for p in drbs.parameters()) if drbs is not None else 0
        counts["trainable"] = sum(p.numel() for n, p in self.named_parameters()
                                  if p.requires_grad and not n.startswith("stage1."))
        counts["frozen"] = sum(p.numel() for n, p in self.named_parameters()
                               if not p.requires_grad and not n.startswith("stage1."))
        return counts
