"""Classical restoration baselines (pure functions on H×W×3 float32 arrays in [0, 1], one method per file) and
their registry per task (:mod:`src.baselines.registry`)."""

from src.baselines.registry import (
    BASELINES,
    Baseline,
    BaselineResult,
    all_skipped_notes,
    baseline_scores,
    baselines_for,
    best_baseline,
    run_baselines,
    skipped_notes,
)

__all__ = ["BASELINES", "Baseline", "BaselineResult", "all_skipped_notes", "baseline_scores", "baselines_for",
           "best_baseline", "run_baselines", "skipped_notes"]
