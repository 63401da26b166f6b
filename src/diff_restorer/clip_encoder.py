"""The frozen CLIP image encoder E_clip of Diff-Restorer (paper Eq. 2: P_CLIP = E_clip(I_LQ)), via open_clip.

open_clip's preprocessing (resize of the shortest side with bicubic interpolation, centre crop, normalisation
with the model's mean/std) is done on tensors, so whole batches on any device go through at once. Weights come
from a local file only; tests build a tiny random model from an open_clip config dict instead.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from src.diff_restorer.sd_loading import seeded

DEFAULT_CLIP_MODEL = "ViT-L-14-quickgelu"  # OpenAI's ViT-L/14 (QuickGELU), the image tower that goes with SD-1.5
DEFAULT_CLIP_WEIGHTS = "clip/ViT-L-14-openai/open_clip_pytorch_model.bin"  # under paths.weights_dir
CLIP_HF_REPO = "timm/vit_large_patch14_clip_224.openai"

# A tiny open_clip CLIP (random weights) for tests and CPU demos: 32-d embeddings, 32×32 input.
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def missing_clip_message(weights: str | Path, model_name: str) -> str:
    return (
        f"CLIP weights file not found: {weights} (open_clip model {model_name!r}).\n"
        f"Download OpenAI's CLIP ViT-L/14 in open_clip format, e.g.\n"
        f"  huggingface-cli download {CLIP_HF_REPO} open_clip_pytorch_model.bin --local-dir "
        f"<weights_dir>/{Path(DEFAULT_CLIP_WEIGHTS).parent}\n"
        "(<weights_dir> is paths.weights_dir: $UIR_WEIGHTS, default ./weights), or point model.clip.weights at "
        "your copy. Use model_name ViT-L-14-quickgelu for OpenAI weights (they were trained with QuickGELU)."
    )


def _on_meta() -> bool:
    """True while modules are built on the meta device (``with torch.device("meta")``: the checkpoint loader's
    shapes-only probe, :func:`src.utils.checkpoints.check_sizes_before_building`): weights are not read then."""
    return torch.empty(0).device.type == "meta"


class CLIPImageEncoder(nn.Module):
    """Frozen open_clip image tower: ``forward(images in [0, 1], B×3×H×W) -> B×embed_dim`` (P_CLIP).

    Args:
        model_name: an open_clip architecture name (``open_clip.list_models()``); ignored when ``model_cfg`` is set.
        weights: a local open_clip checkpoint file (``.bin``/``.pt``/``.safetensors``); required unless
            ``model_cfg`` is given (then optional).
        model_cfg: an open_clip model config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``) for a custom,
            randomly initialised model (seeded with ``seed``), e.g. :data:`TINY_CLIP_CONFIG`.
        keep_text: keep the text tower too (the CLIP probe needs it; Diff-Restorer does not).
        normalize: return unit-norm embeddings. The default (raw projected embedding) is what the Prompt
            Processor gets; the paper does not say which it uses.
    """

    def __init__(self, model_name: str = DEFAULT_CLIP_MODEL, weights: str | Path | None = None,
                 model_cfg: dict | None = None, keep_text: bool = False, normalize: bool = False,
                 seed: int | None = 0):
        super().__init__()
        self.model_name, self.normalize = (model_name if model_cfg is None else "custom"), normalize
        if model_cfg is None:
            if weights is None:
                raise ValueError(f"CLIPImageEncoder({model_name!r}) needs a weights file (or a model_cfg for a "
                                 "randomly initialised custom model)")
            if not Path(weights).is_file():
                raise FileNotFoundError(missing_clip_message(weights, model_name))
            if _on_meta():  # the loader's shapes-only probe: architecture on the meta device, no file read
                logging.disable(logging.WARNING)  # open_clip's "initialized randomly" is not news here
                try:
                    model = open_clip.create_model(model_name, pretrained=None, device="meta")
                finally:
                    logging.disable(logging.NOTSET)
            else:
                model = open_clip.create_model(model_name, pretrained=str(weights))
        else:
            cfg = {k: v for k, v in model_cfg.items() if k != "custom_text"}
            cls = open_clip.CustomTextCLIP if model_cfg.get("custom_text") else open_clip.CLIP
            model = seeded(seed, lambda: cls(**cfg))
            if weights is not None:
                if not Path(weights).is_file():
                    raise FileNotFoundError(missing_clip_message(weights, "custom"))
                if not _on_meta():
                    open_clip.load_checkpoint(model, str(weights))
        pp = open_clip.get_model_preprocess_cfg(model)
        size = pp.get("size", model.visual.image_size)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.resize_mode = pp.get("resize_mode", "shortest")
        self.interpolation = pp.get("interpolation", "bicubic")
        self.register_buffer("mean", torch.tensor(pp.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(pp.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1),
                             persistent=False)
        self.visual = model.visual
        self.model = model if keep_text else None  # the text tower (and logit scale) only when asked for
        proj = getattr(model.visual, "proj", None)
        self.embed_dim = int(proj.shape[1]) if proj is not None else int(model.visual.output_dim)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):  # always frozen
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """open_clip's image transform on a B×3×H×W batch in [0, 1]: resize, centre crop, normalise."""
        th, tw = self.image_size
        h, w = images.shape[-2:]
        if self.resize_mode == "squash":
            size = (th, tw)
        elif self.resize_mode == "shortest" and th == tw:  # torchvision's Resize(int): the long side truncated
            size = (th, int(th * w / h)) if h <= w else (int(tw * h / w), tw)
        else:  # "shortest" (open_clip's default) and "longest" (then padded)
            scale = (max if self.resize_mode == "shortest" else min)(th / h, tw / w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = images.float()
        if size != (h, w):
            mode = self.interpolation if self.interpolation in ("bicubic", "bilinear") else "bilinear"
            x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True).clamp(0, 1)
        if x.shape[-2:] != (th, tw):  # centre crop, or pad (longest) with zeros
            dh, dw = x.shape[-2] - th, x.shape[-1] - tw
            if dh < 0 or dw < 0:
                x = F.pad(x, (max(-dw, 0) // 2, math.ceil(max(-dw, 0) / 2), max(-dh, 0) // 2,
                              math.ceil(max(-dh, 0) / 2)))
                dh, dw = x.shape[-2] - th, x.shape[-1] - tw
            top, left = int(round(dh / 2.0)), int(round(dw / 2.0))  # torchvision's CenterCrop offsets
            x = x[..., top:top + th, left:left + tw]
        return (x - self.mean) / self.std

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        emb = self.visual(self.preprocess(images)).float()
        return F.normalize(emb, dim=-1) if self.normalize else emb

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError("this CLIPImageEncoder was built with keep_text=False")
        return self.model.encode_text(tokens).float()

    def tokenizer(self):
        """open_clip's tokenizer for this model (the bundled BPE vocabulary: nothing is downloaded)."""
        if self.model is None:
            raise RuntimeError("this CLIPImageEncoder was built with keep_text=False")
        if self.model_name == "custom":
            return open_clip.SimpleTokenizer(context_length=self.model.context_length)
        return open_clip.get_tokenizer(self.model_name)
