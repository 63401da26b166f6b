"""Metric names → how each is computed, and :class:`MetricSuite`, which scores a batch with all requested ones.

=========  ==========================  =====================================================================
name       what                        computed by
=========  ==========================  =====================================================================
psnr       PSNR on Y (BT.601), dB      :mod:`src.metrics.fidelity` (BasicSR convention; DiffUIR Tables 1–3, 5)
ssim       SSIM on Y                   :mod:`src.metrics.fidelity`
psnr_rgb   PSNR on R, G, B             :mod:`src.metrics.fidelity` (DiffUIR Table 4 "computed in all channels")
ssim_rgb   SSIM, mean of R, G, B       :mod:`src.metrics.fidelity`
loe        lightness order error       :mod:`src.metrics.loe`, restored image vs the degraded input
lpips      LPIPS (AlexNet, v0.1)       pyiqa ``lpips`` (weights needed)
lpips_vgg  LPIPS (VGG, v0.1)           pyiqa ``lpips-vgg`` (weights needed)
dists      DISTS                       pyiqa ``dists`` (weights needed)
niqe       NIQE                        pyiqa ``niqe`` (its pristine model file needed)
ilniqe     IL-NIQE                     pyiqa ``ilniqe`` (its template model file needed; slow)
musiq      MUSIQ (KonIQ)               pyiqa ``musiq`` (weights needed)
clipiqa    CLIP-IQA                    pyiqa ``clipiqa`` (CLIP RN50 weights needed)
fid        FID, per set (per task)     pyiqa ``fid`` between the restored and the reference images (weights)
=========  ==========================  =====================================================================

Every metric is computed on the 8-bit images (outputs are clamped to [0, 1] and rounded to 1/255 first),
i.e. on exactly what a saved PNG holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from src.metrics.fidelity import psnr, ssim, to_uint8
from src.metrics.loe import loe
from src.metrics.perceptual import PYIQA_METRICS, MetricUnavailable, PyiqaScorer, check_weights

__all__ = ["METRICS", "MetricInfo", "MetricSuite", "quantize"]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str             # table header
    kind: str              # "fr": output vs GT; "nr": output alone; "lq": output vs degraded input; "set": folders
    higher_is_better: bool
    digits: int            # decimals shown in tables

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def needs_weights(self) -> bool:
        return self.name in PYIQA_METRICS


METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("psnr", "PSNR (Y)", "fr", True, 2),
    MetricInfo("ssim", "SSIM (Y)", "fr", True, 4),
    MetricInfo("psnr_rgb", "PSNR (RGB)", "fr", True, 2),
    MetricInfo("ssim_rgb", "SSIM (RGB)", "fr", True, 4),
    MetricInfo("lpips", "LPIPS", "fr", False, 4),
    MetricInfo("lpips_vgg", "LPIPS-VGG", "fr", False, 4),
    MetricInfo("dists", "DISTS", "fr", False, 4),
    MetricInfo("fid", "FID", "set", False, 2),
    MetricInfo("niqe", "NIQE", "nr", False, 2),
    MetricInfo("ilniqe", "IL-NIQE", "nr", False, 3),
    MetricInfo("musiq", "MUSIQ", "nr", True, 2),
    MetricInfo("clipiqa", "CLIPIQA", "nr", True, 4),
    MetricInfo("loe", "LOE", "lq", False, 2),
)}

_FIDELITY = {"psnr": (psnr, True), "ssim": (ssim, True), "psnr_rgb": (psnr, False), "ssim_rgb": (ssim, False)}


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid (half to even, as :func:`~src.metrics.fidelity.to_uint8`)."""
    return (x.detach().float().clamp(0, 1) * 255).round() / 255


class MetricSuite:
    """The requested metrics, built once from local weights; scores batches image by image.

    Metrics whose files are missing (or that fail on some image) are listed in :attr:`unavailable` as
    :class:`~src.metrics.perceptual.MetricUnavailable` and never produce a number; the others go on.
    """

    def __init__(self, names, weights_dir: str | Path, device: str | torch.device = "cpu"):
        names = list(dict.fromkeys(names))
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
        self.names, self.weights_dir = names, Path(weights_dir).expanduser()
        self.scorers: dict[str, PyiqaScorer] = {}
        self.unavailable: dict[str, MetricUnavailable] = {}
        for name in names:
            if not METRICS[name].needs_weights:
                continue
            try:
                if METRICS[name].kind == "set":
                    check_weights(name, self.weights_dir)  # FID is built at the end, on the saved images
                else:
                    self.scorers[name] = PyiqaScorer(name, self.weights_dir, device)
            except MetricUnavailable as e:
                self.unavailable[name] = e

    @property
    def available(self) -> list[str]:
        return [n for n in self.names if n not in self.unavailable]

    @property
    def per_image(self) -> list[str]:
        return [n for n in self.available if METRICS[n].kind != "set"]

    @property
    def set_level(self) -> list[str]:
        return [n for n in self.available if METRICS[n].kind == "set"]

    @torch.no_grad()
    def score_batch(self, output: torch.Tensor, gt: torch.Tensor | None, lq: torch.Tensor) -> list[dict]:
        """Per image of a B×3×H×W batch in [0, 1]: ``{metric: float or None}`` (None: needs a GT it lacks),
        plus ``psnr_in`` / ``ssim_in``, the fidelity of the degraded input itself (Y channel)."""
        out, lq = quantize(output), quantize(lq)
        gt = quantize(gt) if gt is not None else None
        batch = out.shape[0]
        rows: list[dict] = [{} for _ in range(batch)]
        out8 = [to_uint8(out[i]) for i in range(batch)]
        lq8 = [to_uint8(lq[i]) for i in range(batch)]
        gt8 = [to_uint8(gt[i]) for i in range(batch)] if gt is not None else None
        for i in range(batch):
            if gt8 is not None:
                rows[i]["psnr_in"], rows[i]["ssim_in"] = psnr(lq8[i], gt8[i]), ssim(lq8[i], gt8[i])
            for name in self.per_image:
                info = METRICS[name]
                if name in _FIDELITY:
                    fn, y_channel = _FIDELITY[name]
                    rows[i][name] = fn(out8[i], gt8[i], y_channel=y_channel) if gt8 is not None else None
                elif name == "loe":
                    rows[i][name] = loe(lq8[i], out8[i])
                elif info.kind == "fr" and gt is None:
                    rows[i][name] = None
        for name, scorer in list(self.scorers.items()):
            if name in self.unavailable or (scorer.full_reference and gt is None):
                continue
            try:
                scores = scorer(out, gt) if scorer.full_reference else scorer(out)
            except Exception as e:  # e.g. an image too small for the metric: the column is dropped, run goes on
                self.unavailable[name] = MetricUnavailable(name, reason=f"failed: {type(e).__name__}: {e}")
                del self.scorers[name]
                continue
            for i, s in enumerate(scores):
                rows[i][name] = s
        return rows
