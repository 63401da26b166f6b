"""The coefficient arrays of DiffUIR's forward process (Eq. 2 and Eq. 4), as the released code defines them."""

from __future__ import annotations

import torch

from src.tasks import shared_coefficient  # noqa: F401  (DiffUIR Table 3's δ̄_T; defined at the bottom floor)


def residual_schedule(
    timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    delta_start: float = 1e-6,
    delta_end: float = 1.8e-3,
) -> dict[str, torch.Tensor]:
    """Cumulative coefficients of I_t = I_0 + ᾱ_t·I_res + β̄_t·ε − δ̄_t·I_in (DiffUIR Eq. 4), float32.

    With the DDPM betas β = linspace(beta_start, beta_end, T) and ā = ∏(1 − β):
      - ``alpha_bar``  ᾱ_t = 1 − √ā_t            (weight of the residual; 5e-5 → 0.99365)
      - ``beta_bar``   β̄_t = √(1 − ā_t)          (noise std; 0.010 → 0.99998)
      - ``delta_bar``  δ̄_t = Σ_{i≤t} δ_i, δ = linspace(delta_start, delta_end, T), clipped to [0, 1]
        (the shared distribution term, SDT; δ̄_T ≈ T·(delta_start + delta_end)/2, so 1.8e-3 → 0.9005).
    Since 1 − ᾱ_t = √ā_t, dropping the residual term gives exactly DDPM's √ā_t·I_0 + √(1 − ā_t)·ε.
    """
    betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float32)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    delta = torch.linspace(delta_start, delta_end, timesteps, dtype=torch.float32)
    return {
        "alpha_bar": 1 - alphas_cumprod**0.5,
        "beta_bar": torch.sqrt(1 - alphas_cumprod),
        "delta_bar": delta.cumsum(dim=0).clip(0, 1),
    }


def sampling_timesteps(steps: int, timesteps: int = 1000) -> list[int]:
    """The times the released DDIM-style sampler visits: int(linspace(−1, T−1, steps+1)) reversed, −1 last.

    3 steps over T = 1000 → [999, 665, 332, −1].
    """
    if not 1 <= steps <= timesteps:
        raise ValueError(f"sampling steps must be in [1, {timesteps}], got {steps}")
    times = torch.linspace(-1, timesteps - 1, steps=steps + 1).int().tolist()
    return list(reversed(times))
