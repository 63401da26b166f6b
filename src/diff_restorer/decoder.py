"""Degradation-aware Decoder (paper §III-D, Fig. 6): the SD VAE decoder with DRBs fusing the LQ image's encoder
features, and the decoders it is compared with in Table V.

* :func:`encode_with_features`: the frozen VAE encoder's posterior of an image plus its intermediate features
  z^lq_1..3 (the outputs of the last ResNet block of encoder levels n−2 … 0, before their down-sampling: for SD-1.5
  512 ch at 1/4, 256 ch at 1/2 and 128 ch at full resolution).
* :class:`DegradationAwareDecoder`: ``post_quant_conv`` and the ``Decoder`` of an ``AutoencoderKL``, copied with
  their weights, and one :class:`~src.diff_restorer.drb.DegradationAwareRefinementBlock` after each of the decoder's
  up-sampling levels 0 … n−2, i.e. at 1/4, 1/2 and full resolution for SD-1.5 (three scales, as the paper's
  z^lq_1..3); ``refinement=False`` is the "w/o DRB" row of Table V (the plain SD decoder, fine-tuned with the same
  losses). At initialisation both are exactly the SD decoder (see ``drb.py`` for why and how).
* :class:`ConsistencyDecoder`: OpenAI's Consistency Decoder (Table V's third row) from a local diffusers folder,
  when there; otherwise marked unavailable so the run reports it as not run.

Which three encoder/decoder scales are fused is not stated in the text; pairing equal resolutions is the only
choice that needs no resampling, and 1/8 (the latent grid) is left out since z_0 itself already lives there.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import nn
from torch.utils.checkpoint import checkpoint

from src.diff_restorer.drb import DegradationAwareRefinementBlock


def encode_with_features(vae: nn.Module, images: torch.Tensor) -> tuple[DiagonalGaussianDistribution,
                                                                          list[torch.Tensor]]:
    """``vae.encode`` of images in [−1, 1], plus z^lq: the encoder features the DRBs take, deepest first.

    Computes exactly what diffusers' ``Encoder.forward`` does (same modules, same order), keeping the output of
    each level's last ResNet block before its down-sampler. The list holds levels n−2, …, 0 (the order in which
    the decoder reaches those resolutions).
    """
    enc = vae.encoder
    x = enc.conv_in(images)
    taps: list[torch.Tensor] = []
    for block in enc.down_blocks:
        for resnet in block.resnets:
            x = resnet(x, temb=None)
        taps.append(x)
        if block.downsamplers is not None:
            for down in block.downsamplers:
                x = down(x)
    x = enc.mid_block(x)
    x = enc.conv_out(enc.conv_act(enc.conv_norm_out(x)))
    if getattr(vae, "quant_conv", None) is not None:
        x = vae.quant_conv(x)
    return DiagonalGaussianDistribution(x), taps[:-1][::-1]


def lq_feature_channels(vae: nn.Module) -> list[int]:
    """Widths of :func:`encode_with_features`' z^lq list (deepest first)."""
    return list(vae.config.block_out_channels)[:-1][::-1]


class DegradationAwareDecoder(nn.Module):
    """``forward(z, lq_features, p_d) -> image in [−1, 1]``: z on the VAE's latent scale (what ``vae.decode`` takes).

    Args:
        vae: the SD ``AutoencoderKL`` whose ``post_quant_conv`` and ``decoder`` are copied (weights included).
        degradation_dim: width of P_D.
        refinement: True: DRBs (the Degradation-aware Decoder); False: "w/o DRB" (no LQ features, no P_D).
        fusion_kernel_size: kernel of each DRB's fusion convolution.
        modulation: keep the P_D modulation f_i of the DRBs.
        gradient_checkpointing: recompute the decoder's blocks in the backward pass (less activation memory).
    """

    trainable = True

    def __init__(self, vae: nn.Module, degradation_dim: int = 256, refinement: bool = True,
                 fusion_kernel_size: int = 3, modulation: bool = True, gradient_checkpointing: bool = False):
        super().__init__()
        self.refinement, self.gradient_checkpointing = refinement, gradient_checkpointing
        pqc = getattr(vae, "post_quant_conv", None)
        self.post_quant_conv = copy.deepcopy(pqc) if pqc is not None else None
        self.decoder = copy.deepcopy(vae.decoder)
        self.requires_grad_(True)
        self.drbs = None
        if refinement:
            dec_channels = list(vae.config.block_out_channels)[::-1]  # output widths of up_blocks 0 … n−1
            groups = int(vae.config.norm_num_groups)
            self.drbs = nn.ModuleList(
                DegradationAwareRefinementBlock(dec_channels[i], lq, degradation_dim, fusion_kernel_size,
                                                modulation, groups)
                for i, lq in enumerate(lq_feature_channels(vae)))

    def new_modules(self) -> list[nn.Module]:
        return [] if self.drbs is None else list(self.drbs)

    def _run(self, fn, *args):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def forward(self, z: torch.Tensor, lq_features: list[torch.Tensor] | None = None,
                p_d: torch.Tensor | None = None) -> torch.Tensor:
        dec = self.decoder
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        x = dec.conv_in(z)
        x = self._run(dec.mid_block, x)
        x = x.to(next(iter(dec.up_blocks.parameters())).dtype)
        for i, up in enumerate(dec.up_blocks):
            x = self._run(up, x)
            if self.drbs is not None and i < len(self.drbs):
                if lq_features is None:
                    raise ValueError("the Degradation-aware Decoder needs the LQ image's encoder features")
                x = self._run(self.drbs[i], x, lq_features[i], p_d)
        return dec.conv_out(dec.conv_act(dec.conv_norm_out(x)))


CONSISTENCY_REPO = "openai/consistency-decoder"


def missing_consistency_message(path: str | Path, problem: str) -> str:
    return (f"Consistency Decoder not usable at {path}: {problem}. Table V's 'Consistency Decoder' row needs a local "
            f"diffusers copy of `{CONSISTENCY_REPO}`, e.g.\n  huggingface-cli download {CONSISTENCY_REPO} "
            "--local-dir <weights_dir>/consistency-decoder\n(<weights_dir> is paths.weights_dir: $UIR_WEIGHTS, "
            "default ./weights). Without it the row is reported as not run.")


class ConsistencyDecoder(nn.Module):
    """OpenAI's Consistency Decoder (``diffusers.ConsistencyDecoderVAE``) behind the decoder interface; frozen.

    It ignores the LQ features and P_D. With ``missing_ok`` a missing folder does not raise: ``available`` is
    False and ``reason`` says what to download (the stage-2 module then reports the run as not run). The other
    keyword arguments (``refinement``, …) are accepted and ignored so that an ablation config can swap this class
    in for :class:`DegradationAwareDecoder`.
    """

    trainable = False

    def __init__(self, vae: nn.Module | None = None, degradation_dim: int | None = None,
                 path: str | Path = "weights/consistency-decoder", num_inference_steps: int = 2,
                 missing_ok: bool = True, **_ignored):
        super().__init__()
        self.path, self.num_inference_steps = str(path), num_inference_steps
        self.model, self.reason = None, None
        folder = Path(path)
        problem = None
        if not folder.is_dir():
            problem = "the folder does not exist"
        elif not (folder / "config.json").is_file():
            problem = "config.json is missing"
        if problem is not None:
            self.reason = missing_consistency_message(path, problem)
            if not missing_ok:
                raise FileNotFoundError(self.reason)
            return
        from diffusers import ConsistencyDecoderVAE

        self.model = ConsistencyDecoderVAE.from_pretrained(str(folder), local_files_only=True)
        self.model.requires_grad_(False).eval()

    @property
    def available(self) -> bool:
        return self.model is not None

    def new_modules(self) -> list[nn.Module]:
        return []

    @torch.no_grad()
    def forward(self, z: torch.Tensor, lq_features=None, p_d=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if self.model is None:
            raise FileNotFoundError(self.reason)
        return self.model.decode(z, generator=generator, return_dict=False,
                                 num_inference_steps=self.num_inference_steps)[0]
