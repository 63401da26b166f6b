"""The classical baselines per task, with their settings, and the per-image best of them.

Every quality table of the suite puts these beside the model (issue 17): a baseline is run live on the same
degraded input and scored with the same PSNR/SSIM on Y (:mod:`src.metrics.fidelity`). ``best_baseline`` picks,
per image, the baseline with the highest PSNR against the ground truth: an oracle choice among the classical
methods, so the column is an upper bound of what they give. Tasks with no classical method here (blur, raindrop)
have no baseline. BM3D needs the optional ``bm3d`` package (``pip install -e .[baselines]``); without it the BM3D
column is skipped and :func:`skipped_notes` says so, the other baselines (OpenCV, scikit-image: core) still run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from src.baselines.auto_levels import auto_levels
from src.baselines.bm3d_denoise import INSTALL_HINT, bm3d_available, bm3d_denoise
from src.baselines.clahe import clahe
from src.baselines.dark_channel import dehaze
from src.baselines.gamma import TARGET_MEAN, gamma_to_mean
from src.baselines.guided_filter import self_guided
from src.baselines.median import median_filter
from src.baselines.nlm import H_PER_SIGMA, nlm_denoise
from src.baselines.noise_level import estimate_noise_sigma
from src.metrics.fidelity import psnr, ssim
from src.tasks import TASKS


@dataclass(frozen=True)
class Baseline:
    """One classical method with fixed settings. ``fn(lq, sigma)``: ``sigma`` (0-255) only for ``uses_sigma``."""

    key: str
    method: str
    settings: str
    fn: Callable[[np.ndarray, float | None], np.ndarray]
    uses_sigma: bool = False
    available: Callable[[], bool] = lambda: True

    def label(self, sigma: float | None = None) -> str:
        """The table name with settings, e.g. ``BM3D (σ known=50)`` or ``BM3D (σ estimated)``."""
        parts = []
        if self.uses_sigma:
            parts.append(f"σ known={sigma:g}" if sigma is not None else "σ estimated")
        if self.settings:
            parts.append(self.settings)
        return f"{self.method} ({', '.join(parts)})" if parts else self.method

    def __call__(self, lq: np.ndarray, sigma: float | None = None) -> np.ndarray:
        lq = np.asarray(lq, dtype=np.float32)
        if self.uses_sigma and sigma is None:
            sigma = estimate_noise_sigma(lq)
        return self.fn(lq, sigma)


# Settings: the best of small grids on five built-in training photos (never the held-out or unseen ones).
_STREAKS = (Baseline("median5", "median", "5×5", lambda x, s: median_filter(x, 5)),
            Baseline("median7", "median", "7×7", lambda x, s: median_filter(x, 7)),
            Baseline("guided", "guided filter", "self-guided, r=3, ε=0.01", lambda x, s: self_guided(x, 3, 0.01)))

BASELINES: dict[str, tuple[Baseline, ...]] = {
    "noise": (
        Baseline("bm3d", "BM3D", "", bm3d_denoise, uses_sigma=True, available=bm3d_available),
        Baseline("nlm", "NLM", f"OpenCV, h={H_PER_SIGMA:g}σ, 5² patch, 21² search", nlm_denoise, uses_sigma=True),
    ),
    "low_light": (
        Baseline("gamma", "gamma", f"to mean {TARGET_MEAN:g}", lambda x, s: gamma_to_mean(x)),
        Baseline("clahe", "CLAHE", "L of Lab, clip 2, 8×8 tiles", lambda x, s: clahe(x)),
        Baseline("levels", "auto levels", "per channel, 2 % clipped", lambda x, s: auto_levels(x, 0.02)),
    ),
    "haze": (Baseline("dcp", "dark channel prior", "15² patch, ω=0.85, t0=0.1, guided r=15, ε=0.01",
                      lambda x, s: dehaze(x, patch=15, omega=0.85, radius=15, eps=0.01)),
             Baseline("levels", "auto levels", "per channel, 0.1 % clipped", lambda x, s: auto_levels(x, 0.001))),
    "rain": _STREAKS,
    "snow": _STREAKS,
    "jpeg": (Baseline("deblock", "guided filter deblocking", "self-guided, r=2, ε=0.003",
                      lambda x, s: self_guided(x, 2, 0.003)),),
    "raindrop": (),
    "blur": (),
}
assert set(BASELINES) == set(TASKS), "every task of src.data.degradations needs an entry (possibly empty)"


def _check(task: str) -> None:
    if task not in BASELINES:
        raise ValueError(f"no baselines for unknown task {task!r}; expected one of {list(BASELINES)}")


def baselines_for(task: str) -> list[Baseline]:
    """The baselines of ``task`` whose packages are installed (see :func:`skipped_notes` for the others)."""
    _check(task)
    return [b for b in BASELINES[task] if b.available()]


def skipped_notes(task: str) -> list[str]:
    """One line per baseline of ``task`` that cannot run here, saying how to get it."""
    _check(task)
    return [f"{b.method} skipped: the bm3d package is not installed ({INSTALL_HINT})"
            for b in BASELINES[task] if not b.available()]


def all_skipped_notes(tasks) -> list[str]:
    """:func:`skipped_notes` over several tasks, each note once."""
    return list(dict.fromkeys(n for t in tasks for n in skipped_notes(t)))


@dataclass
class BaselineResult:
    key: str
    label: str
    out: np.ndarray
    psnr: float
    ssim: float


def run_baselines(task: str, lq: np.ndarray, gt: np.ndarray, sigma: float | None = None,
                  blind_too: bool = False) -> list[BaselineResult]:
    """Every available baseline of ``task`` on ``lq`` (H×W×3 float in [0, 1]), scored against ``gt`` on Y.

    ``blind_too``: with a known ``sigma``, also run each σ-using baseline with σ estimated (key ``<key>_est``):
    what a user who does not know σ gets, the fair match for a blind model."""
    results = []
    for b in baselines_for(task):
        runs = [(b.key, sigma)]
        if blind_too and b.uses_sigma and sigma is not None:
            runs.append((f"{b.key}_est", None))  # None: the baseline estimates σ itself
        for key, s in runs:
            out = b(lq, s)
            results.append(BaselineResult(key, b.label(s), out, psnr(out, gt), ssim(out, gt)))
    return results


def best_baseline(task: str, lq: np.ndarray, gt: np.ndarray, sigma: float | None = None,
                  results: list[BaselineResult] | None = None) -> BaselineResult | None:
    """The baseline of ``task`` with the highest PSNR-Y on this image (None when the task has none here)."""
    results = run_baselines(task, lq, gt, sigma) if results is None else results
    return max(results, key=lambda r: r.psnr) if results else None


def _hwc(img) -> np.ndarray:
    """A C×H×W tensor or H×W×3 array as an H×W×3 float32 array clipped to [0, 1]."""
    if hasattr(img, "permute"):
        img = img.detach().float().cpu().permute(1, 2, 0).numpy()
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


def baseline_scores(task: str, lq, gt) -> dict:
    """``{"psnr_base", "ssim_base", "baseline"}`` of the best baseline for one C×H×W tensor (or H×W×3 array)
    pair, σ estimated; ``{}`` when the task has no baseline. What the evaluation tables record per image."""
    best = best_baseline(task, _hwc(lq), _hwc(gt))
    return {} if best is None else {"psnr_base": best.psnr, "ssim_base": best.ssim, "baseline": best.label}
