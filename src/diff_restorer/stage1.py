"""Diff-Restorer stage 1 (paper §III-B, §III-C, §III-E Eq. 6–7): the conditioned diffusion model.

L = L_diff + λ1·L_deg + λ2·L_rec, with L_diff the ε-prediction MSE on SD-1.5 VAE latents of the HQ image (DDPM
schedule of SD-1.5), L_deg the degradation classifier's cross-entropy and L_rec the Control Decoder's MSE.
Sampling: UniPC, 20 steps, decoded with the SD VAE decoder ("Ours_S" in Tables I–V); :meth:`sample_latents` gives
the latents alone, which :class:`~src.diff_restorer.pipeline.DiffRestorerPipeline` decodes with the stage-2
Degradation-aware Decoder (src/diff_restorer/stage2.py).

Checkpoints hold only the trainable parts (Prompt Processor, Control Encoder/Decoder, control network, and the
U-Net when ``train_unet``) plus the model's config; the frozen SD U-Net, VAE and CLIP are rebuilt from their
local files. :meth:`DiffRestorerStage1.from_checkpoint` (or ``src.utils.checkpoints.load_model_from_checkpoint``)
does both::

    model = DiffRestorerStage1.from_checkpoint("last.ckpt", sd_dir="weights/stable-diffusion-v1-5",
                                               clip_weights="weights/clip/ViT-L-14-openai/open_clip_pytorch_model.bin")
    restored = model.restore(lq)          # B×3×H×W in [0, 1], any H, W
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from src.diff_restorer.control_module import ImageControlNetwork
from src.diff_restorer.partial_state import PartialStateDictMixin
from src.diff_restorer.sd_loading import SD15_NOISE_SCHEDULE
from src.evaluation.mixin import RestorationEvalMixin
from src.tasks import TASKS
from src.utils.checkpoints import StoredConfigMixin
from src.utils.padding import pad_to_multiple

FROZEN_ALWAYS = ("vae", "clip")


def _build(part, **kwargs) -> nn.Module:
    """A module given as a module, or as a factory (a Hydra ``_partial_``) completed with ``kwargs``."""
    return part if isinstance(part, nn.Module) else part(**kwargs)


class DiffRestorerStage1(PartialStateDictMixin, StoredConfigMixin, RestorationEvalMixin, L.LightningModule):
    """SD-1.5 U-Net (frozen) + Visual Prompt Processor + Image-guided Control Module, trained with Eq. 7.

    Args:
        unet, vae: SD-1.5 ``UNet2DConditionModel`` and ``AutoencoderKL`` (``src.diff_restorer.sd_loading``).
        clip: a :class:`~src.diff_restorer.clip_encoder.CLIPImageEncoder`.
        prompt_processor: factory ``(in_dim, semantic_dim, num_classes) -> PromptProcessor`` (or a module).
        control_encoder: factory ``(degradation_dim) -> ControlEncoder`` (or a module).
        control_decoder: factory ``(in_channels) -> ControlDecoder``, a module, or None ("w/o CD"). Only L_rec
            uses it, so with ``lambda_rec = 0`` it is not built ("w/o L_rec" ≡ "w/o CD": Tables III and IV
            report identical numbers for the two).
        optimizer, scheduler: factories (Hydra ``_partial_``) taking ``params`` / ``optimizer``.
        lambda_deg, lambda_rec: λ1, λ2 of Eq. 7 (both 1 in the paper).
        null_degradation_embedding: the "w/o P_D" ablation: the Control Encoder gets a zero P_D.
        train_unet: also fine-tune the SD U-Net. The paper does not say whether it does ("we finetune the
            model"); False (ControlNet practice, and 860M fewer trainable parameters) is the default.
        gradient_checkpointing: diffusers' activation checkpointing in the U-Net and the control network.
        conditioning_scale: multiplier of the control residuals (1 in training).
        noise_schedule: DDPM betas (SD-1.5's by default) for training and for the UniPC sampler.
        sampling_steps: UniPC steps of :meth:`restore` (20 in the paper).
        task_names: names of the classifier's classes = of the batches' ``task`` labels (default: TASKS).
    """

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        clip: nn.Module,
        prompt_processor: Callable | nn.Module,
        control_encoder: Callable | nn.Module,
        control_decoder: Callable | nn.Module | None,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        lambda_deg: float = 1.0,
        lambda_rec: float = 1.0,
        null_degradation_embedding: bool = False,
        train_unet: bool = False,
        gradient_checkpointing: bool = False,
        conditioning_scale: float = 1.0,
        noise_schedule: dict | None = None,
        sampling_steps: int = 20,
        grid_samples: int = 8,
        task_names: list[str] | None = None,
    ):
        super().__init__()
        # plain values only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["unet", "vae", "clip", "prompt_processor", "control_encoder",
                                          "control_decoder", "optimizer", "scheduler"], logger=False)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.task_names = list(task_names or TASKS)
        if self.task_names != list(TASKS):  # batch labels index TASKS (every DataModule), so the classes must too
            raise ValueError(f"model.task_names={self.task_names}: the classifier's classes are the batches' task "
                             f"labels, indices into src.tasks.TASKS {list(TASKS)}; leave it null")
        self.unet, self.vae, self.clip = unet, vae, clip
        self.prompt_processor = _build(prompt_processor, in_dim=clip.embed_dim,
                                       semantic_dim=unet.config.cross_attention_dim, num_classes=len(self.task_names))
        if self.prompt_processor.semantic_dim != unet.config.cross_attention_dim:
            raise ValueError(f"P_S has {self.prompt_processor.semantic_dim} dimensions but the U-Net's "
                             f"cross_attention_dim is {unet.config.cross_attention_dim}")
        self.control_encoder = _build(control_encoder, degradation_dim=self.prompt_processor.degradation_dim)
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if self.control_encoder.downsample_factor != self.vae_factor:
            raise ValueError(f"the Control Encoder downsamples by {self.control_encoder.downsample_factor} but the "
                             f"VAE by {self.vae_factor}: the control features must be on the latent grid")
        self.control_decoder = (_build(control_decoder, in_channels=self.control_encoder.out_channels)
                                if control_decoder is not None and lambda_rec > 0 else None)
        self.control_network = ImageControlNetwork.from_unet(unet, self.control_encoder.out_channels)

        # what is trained (and saved): everything but the SD VAE, CLIP and (by default) the SD U-Net
        self.vae.requires_grad_(False)
        self.clip.requires_grad_(False)
        self.unet.requires_grad_(train_unet)
        if lambda_deg == 0:  # the classifier gets no gradient; nor does B_d when P_D is not used either
            self.prompt_processor.classifier.requires_grad_(False)
            if null_degradation_embedding:
                self.prompt_processor.degradation.requires_grad_(False)
        names = ["prompt_processor", "control_encoder", "control_network"]
        names += ["control_decoder"] * (self.control_decoder is not None) + ["unet"] * train_unet
        self.trainable_prefixes = tuple(f"{n}." for n in names)
        self.saved_prefixes = self.trainable_prefixes
        if gradient_checkpointing:
            self.control_network.enable_gradient_checkpointing()
            self.unet.enable_gradient_checkpointing()

        self.noise_schedule = dict(noise_schedule or SD15_NOISE_SCHEDULE)
        self.noise_scheduler = DDPMScheduler(**self.noise_schedule, prediction_type="epsilon", clip_sample=False)
        self.latent_scale = float(vae.config.scaling_factor)
        self.pad_multiple = self.vae_factor * 2 ** (len(unet.config.block_out_channels) - 1)
        self._eval_records: list[dict] = []
        self._grid: list[torch.Tensor] | None = None
        self.test_rows: list[dict] = []

    # ------------------------------------------------------------------ trainable parts only in checkpoints
    def frozen_modules(self) -> list[nn.Module]:
        return [self.vae, self.clip] + ([] if self.hparams.train_unet else [self.unet])

    @classmethod
    def edit_stored_config(cls, config: dict, sd_dir: str | Path | None = None,
                           clip_weights: str | Path | None = None) -> None:
        """``from_checkpoint(path, sd_dir=..., clip_weights=...)``: the stored config with the SD folder / CLIP
        weights file replaced (e.g. on another machine); frozen parts come from those files, trained parts from
        ``path``."""
        for part in ("unet", "vae"):
            if sd_dir is not None and isinstance(config.get(part), dict) and "sd_dir" in config[part]:
                config[part]["sd_dir"] = str(sd_dir)
        if clip_weights is not None and isinstance(config.get("clip"), dict):
            config["clip"]["weights"] = str(clip_weights)

    # ------------------------------------------------------------------ the network
    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad bottom/right to a multiple of ``pad_multiple`` (cropped back after decoding)."""
        return pad_to_multiple(x, self.pad_multiple)[0]

    def visual_prompts(self, lq: torch.Tensor) -> dict[str, torch.Tensor]:
        """P_CLIP, P_S, P_D and the classifier's logits of LQ images in [0, 1]."""
        p_clip = self.clip(lq)
        p_s, p_d, logits = self.prompt_processor(p_clip)
        return {"p_clip": p_clip, "p_s": p_s, "p_d": p_d, "logits": logits}

    def control_features(self, lq_padded: torch.Tensor, p_d: torch.Tensor) -> torch.Tensor:
        if self.hparams.null_degradation_embedding:
            p_d = torch.zeros_like(p_d)
        return self.control_encoder(lq_padded, p_d)

    def predict_noise(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, control: torch.Tensor,
                      conditioning_scale: float | None = None) -> torch.Tensor:
        """ε_θ(z_t, t, I_LQ): the control network's residuals added into the U-Net's skip connections."""
        scale = self.hparams.conditioning_scale if conditioning_scale is None else conditioning_scale
        down, mid = self.control_network(z_t, t, context, control, conditioning_scale=scale)
        return self.unet(z_t, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid, return_dict=False)[0]

    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z_0 = scaling_factor · a sample of the VAE posterior, for images in [0, 1]."""
        return self.vae.encode(images * 2 - 1).latent_dist.sample(generator) * self.latent_scale

    def compute_losses(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Eq. 7 on a batch; ``generator`` fixes t, ε and the VAE sample (for tests)."""
        lq, gt = batch["lq"], batch["gt"]
        prompts = self.visual_prompts(lq)
        lq_p, gt_p = self.pad(lq), self.pad(gt)
        control = self.control_features(lq_p, prompts["p_d"])
        z0 = self.encode_latents(gt_p, generator)
        noise = randn_tensor(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (z0.shape[0],), generator=generator,
                          device=generator.device if generator is not None else z0.device).to(z0.device)
        z_t = self.noise_scheduler.add_noise(z0, noise, t)
        eps = self.predict_noise(z_t, t, prompts["p_s"][:, None], control)
        out = {"l_diff": F.mse_loss(eps.float(), noise.float())}
        labels = batch["task"].long()
        out["l_deg"] = self.prompt_processor.degradation_loss(prompts["logits"].float(), labels)
        out["deg_acc"] = (prompts["logits"].argmax(1) == labels).float().mean()
        loss = out["l_diff"] + self.hparams.lambda_deg * out["l_deg"]
        if self.control_decoder is not None:
            rec = self.control_decoder(control)[..., : gt.shape[-2], : gt.shape[-1]]
            out["l_rec"] = self.control_decoder.loss(rec, gt)
            loss = loss + self.hparams.lambda_rec * out["l_rec"]
        out["loss"] = loss
        return out

    # ------------------------------------------------------------------ training
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                                          "interval": "step"}}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"Diff-Restorer loss became {losses['loss'].item()} at step {self.global_step}")
        bs = batch["gt"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        for key in ("l_diff", "l_deg", "l_rec", "deg_acc"):
            if key in losses:
                self.log(f"train/{key}", losses[key], batch_size=bs)
        return losses["loss"]

    # ------------------------------------------------------------------ inference
    def sampler(self) -> UniPCMultistepScheduler:
        return UniPCMultistepScheduler(**self.noise_schedule, prediction_type="epsilon")

    @torch.no_grad()
    def sample_latents(self, lq: torch.Tensor, steps: int | None = None, generator: torch.Generator | None = None,
                       conditioning_scale: float | None = None, prompts: dict[str, torch.Tensor] | None = None,
                       callback=None) -> tuple[torch.Tensor, torch.Tensor]:
        """UniPC sampling of the latents of B×3×H×W LQ images in [0, 1]: ``(z, lq_padded)``.

        ``z`` is on the VAE's own scale (``vae.decode(z)`` decodes it; the padded size ÷ the VAE factor), so any
        decoder can finish the job: the SD VAE decoder in :meth:`restore`, the stage-2 Degradation-aware Decoder
        in :class:`~src.diff_restorer.pipeline.DiffRestorerPipeline`. ``prompts``: precomputed
        :meth:`visual_prompts` of ``lq``. ``callback(done, total)``: called after each sampling step.
        """
        prompts = self.visual_prompts(lq) if prompts is None else prompts
        lq_p = self.pad(lq)
        control = self.control_features(lq_p, prompts["p_d"])
        context = prompts["p_s"][:, None]
        sched = self.sampler()
        sched.set_timesteps(steps or self.hparams.sampling_steps, device=lq.device)
        shape = (lq.shape[0], self.unet.config.in_channels, lq_p.shape[-2] // self.vae_factor,
                 lq_p.shape[-1] // self.vae_factor)
        z = randn_tensor(shape, generator=generator, device=lq.device, dtype=lq.dtype) * sched.init_noise_sigma
        for i, t in enumerate(sched.timesteps, 1):
            eps = self.predict_noise(sched.scale_model_input(z, t), t, context, control, conditioning_scale)
            z = sched.step(eps, t, z).prev_sample
            if callback is not None:
                callback(i, len(sched.timesteps))
        return z / self.latent_scale, lq_p

    @torch.no_grad()
    def restore(self, lq: torch.Tensor, steps: int | None = None, generator: torch.Generator | None = None,
                conditioning_scale: float | None = None, callback=None) -> torch.Tensor:
        """Restore B×3×H×W images in [0, 1] of any size: UniPC sampling in latent space, SD VAE decoder."""
        h, w = lq.shape[-2:]
        z, _ = self.sample_latents(lq, steps, generator, conditioning_scale, callback=callback)
        image = self.vae.decode(z, return_dict=False)[0]
        return ((image.float() + 1) / 2).clamp(0, 1)[..., :h, :w]

    @torch.no_grad()
    def detect_degradation(self, lq: torch.Tensor) -> list[str]:
        """The degradation type the classifier C sees in each LQ image."""
        logits = self.visual_prompts(lq)["logits"]
        return [self.task_names[i] for i in logits.argmax(1).tolist()]

    # ------------------------------------------------------------------ bookkeeping
    def parameter_counts(self) -> dict[str, int]:
        """Trainable and frozen parameters, in total and per part."""
        counts = {name: sum(p.numel() for p in m.parameters()) for name, m in self.named_children()}
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        counts["frozen"] = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        return counts
