"""Visual Prompt Processor (paper §III-B, Eq. 2): P_S = B_s(P_CLIP), P_D = B_d(P_CLIP), d = C(P_D)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(dims: list[int], negative_slope: float = 0.01) -> nn.Sequential:
    """Linear layers ``dims[0] → … → dims[-1]``, each but the last followed by LayerNorm and LeakyReLU."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [nn.LayerNorm(b), nn.LeakyReLU(negative_slope)]
    return nn.Sequential(*layers)


class PromptProcessor(nn.Module):
    """Two branches over the CLIP image embedding, and the degradation classifier C.

    * semantic branch B_s: three MLP layers → P_S ∈ R^semantic_dim (768 = SD-1.5's cross-attention width),
      fed to the U-Net (and the control network) through cross-attention as a single context token;
    * degradation branch B_d: two MLP layers → P_D ∈ R^degradation_dim (256);
    * classifier C: one Linear layer P_D → N task logits, trained with cross-entropy (L_deg).

    The paper gives the layer counts and output sizes only; the hidden widths are ``semantic_hidden_dim``
    (default: semantic_dim) and ``degradation_dim``.

    ``semantic_branch=False`` is the "w/o B_s" ablation (Table II): P_CLIP goes to the U-Net directly. When the
    CLIP embedding width differs from the U-Net's cross-attention width (not the case for ViT-L/14 + SD-1.5:
    both 768) a single trainable Linear projection is put in between, which is the least that makes it fit.
    """

    def __init__(self, in_dim: int, semantic_dim: int = 768, num_classes: int = 8, degradation_dim: int = 256,
                 semantic_hidden_dim: int | None = None, semantic_branch: bool = True, negative_slope: float = 0.01):
        super().__init__()
        self.in_dim, self.semantic_dim, self.degradation_dim = in_dim, semantic_dim, degradation_dim
        self.num_classes, self.semantic_branch = num_classes, semantic_branch
        hidden = semantic_hidden_dim or semantic_dim
        if semantic_branch:
            self.semantic = mlp([in_dim, hidden, hidden, semantic_dim], negative_slope)
        else:
            self.semantic = nn.Identity() if in_dim == semantic_dim else nn.Linear(in_dim, semantic_dim)
        self.degradation = mlp([in_dim, degradation_dim, degradation_dim], negative_slope)
        self.classifier = nn.Linear(degradation_dim, num_classes)

    def forward(self, p_clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """B×in_dim → (P_S B×semantic_dim, P_D B×degradation_dim, logits B×num_classes)."""
        p_clip = p_clip.to(self.classifier.weight.dtype)
        p_d = self.degradation(p_clip)
        return self.semantic(p_clip), p_d, self.classifier(p_d)

    @staticmethod
    def degradation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L_deg: cross-entropy of the classifier against the degradation type."""
        return F.cross_entropy(logits, labels)
