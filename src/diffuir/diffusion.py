"""DiffUIR's residual diffusion with the shared distribution term: forward process, loss and sampler."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.diffuir.schedule import residual_schedule, sampling_timesteps


class ResidualDiffusion(nn.Module):
    """Forward process, L1 residual objective and 3-step sampler of DiffUIR (Eq. 4, Eq. 8, Eq. 11).

    Written in one form that covers the paper's ablations (Table 2):
        I_t = (1 − ᾱ_t)·I_0 + c_t·I_in + β̄_t·ε,   c_t = [EC]·ᾱ_t − [SDT]·δ̄_t.
    With EC and SDT on this is Eq. 4 (I_0 + ᾱ_t·I_res + β̄_t·ε − δ̄_t·I_in); "−SDT" is RDDM's Eq. 2;
    "−EC & SDT" is standard DDPM (√ā_t·I_0 + √(1−ā_t)·ε) with the degraded image entering only through
    concatenation; "−IC & SDT" keeps EC but feeds the network x_t alone (``implicit_condition=False``).
    Images are in [−1, 1]. The network predicts I_res = I_in − I_0 from (x_t ⊕ I_in, ᾱ_t·T).
    """

    def __init__(
        self,
        timesteps: int = 1000,
        delta_end: float = 1.8e-3,
        explicit_condition: bool = True,
        shared_distribution: bool = True,
        implicit_condition: bool = True,
        sampling_steps: int = 3,
        start_noise_std: float = 0.1,
        clip_residual: bool = True,
        train_times: str = "uniform",
    ):
        super().__init__()
        if train_times not in ("uniform", "sampler"):
            raise ValueError(f"diffusion.train_times={train_times!r}: expected 'uniform' (the paper's Algorithm 1) or "
                             "'sampler' (the sampler's own path)")
        self.train_times = train_times
        self.timesteps = timesteps
        self.explicit_condition = explicit_condition
        self.shared_distribution = shared_distribution
        self.implicit_condition = implicit_condition
        self.sampling_steps = sampling_steps
        self.start_noise_std = start_noise_std
        self.clip_residual = clip_residual
        sched = residual_schedule(timesteps, delta_end=delta_end)
        if not shared_distribution:
            sched["delta_bar"] = torch.zeros_like(sched["delta_bar"])
        for name, value in sched.items():
            self.register_buffer(name, value, persistent=False)

    @property
    def network_in_channels(self) -> int:
        return 6 if self.implicit_condition else 3

    def input_coefficient(self, t: torch.Tensor) -> torch.Tensor:
        """c_t, the weight of I_in in I_t."""
        ec = self.alpha_bar[t] if self.explicit_condition else torch.zeros_like(self.alpha_bar[t])
        return ec - self.delta_bar[t]

    def q_sample(self, x0: torch.Tensor, x_in: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """I_t given I_0, I_in (DiffUIR Eq. 4 / Algorithm 1 line 5); ``t`` holds one integer time per sample."""
        a, b, d = (v[t].view(-1, 1, 1, 1) for v in (self.alpha_bar, self.beta_bar, self.delta_bar))
        if self.explicit_condition:
            return x0 + a * (x_in - x0) + b * noise - d * x_in
        return (1 - a) * x0 + b * noise - d * x_in

    def predict_residual(self, net: nn.Module, x_t: torch.Tensor, x_in: torch.Tensor, t: torch.Tensor):
        """The network's I_res; its time input is ᾱ_t·T, as in the released code."""
        net_in = torch.cat((x_t, x_in), dim=1) if self.implicit_condition else x_t
        return net(net_in, self.alpha_bar[t] * self.timesteps)

    def loss(self, net: nn.Module, x0: torch.Tensor, x_in: torch.Tensor, generator=None) -> torch.Tensor:
        """L1 between the predicted and true residual at a uniform random time (Eq. 11, Algorithm 1); with
        ``train_times='sampler'``, :meth:`sampler_path_loss` instead."""
        if self.train_times == "sampler":
            return self.sampler_path_loss(net, x0, x_in, generator)
        b = x0.shape[0]
        t = torch.randint(0, self.timesteps, (b,), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x_t = self.q_sample(x0, x_in, t, noise)
        return F.l1_loss(self.predict_residual(net, x_t, x_in, t), x_in - x0)

    def sampler_path_loss(self, net: nn.Module, x0: torch.Tensor, x_in: torch.Tensor, generator=None) -> torch.Tensor:
        """The L1 residual loss of Eq. 11 where the sampler looks: at one of the ``sampling_steps`` times of
        :meth:`sample` (drawn uniformly, one per batch), on the I_t the sampler itself reaches there — its start
        (1 − δ̄_T)·I_in + s·ε, then the network's own (no-grad) steps. Algorithm 1 trains on I_t of Eq. 4 at any t,
        whose noise β̄_t·ε (0.82–1.0 at the three times of a 3-step sampler) the 3-step sampler never produces
        (its I_t carries s = 0.1), and spends its small-t samples on inputs it never meets. A fine-tuning option of
        the suite, not the paper's: ``model.diffusion.train_times=sampler``. Costs on average (steps − 1)/2 extra
        forward passes without gradient per batch."""
        times = sampling_timesteps(self.sampling_steps, self.timesteps)
        k = int(torch.randint(0, len(times) - 1, (1,), generator=generator))
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x = self.start(x_in, noise)
        batch = x0.shape[0]
        with torch.no_grad():
            for t, t_next in zip(times[:k], times[1:k + 1]):
                res = self.predict_residual(net, x, x_in, torch.full((batch,), t, device=x0.device, dtype=torch.long))
                x = self.step(x, res, x_in, t, t_next)
        t = torch.full((batch,), times[k], device=x0.device, dtype=torch.long)
        return F.l1_loss(self.predict_residual(net, x.detach(), x_in, t), x_in - x0)

    def start(self, x_in: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The sampler's I_T (see :meth:`sample`)."""
        last = self.timesteps - 1
        start_coef = 1 - self.delta_bar[last] if self.explicit_condition else (
            1 - self.alpha_bar[last] - self.delta_bar[last]
        )
        return start_coef * x_in + self.start_noise_std * noise

    def step(self, x: torch.Tensor, res: torch.Tensor, x_in: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
        """One update of :meth:`sample` from time ``t`` to ``t_next`` (−1: the last, I_0 = I_in − Î_res) given the
        network's Î_res (clamped to [−1, 1] with ``clip_residual``)."""
        if self.clip_residual:
            res = res.clamp(-1, 1)
        if t_next < 0:
            return (x_in - res).clamp(-1, 1)
        alpha = self.alpha_bar[t] - self.alpha_bar[t_next]
        delta = self.delta_bar[t] - self.delta_bar[t_next]
        if not self.explicit_condition:
            delta = delta + alpha
        return x - alpha * res + delta * x_in

    @torch.no_grad()
    def sample(
        self,
        net: nn.Module,
        x_in: torch.Tensor,
        steps: int | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        callback=None,
    ):
        """Restore ``x_in`` ([−1, 1]) with Algorithm 2 using the DDIM-style update of Eq. 8.

        ``callback(done, total)``, if given, is called after each step (progress bars; it may raise to stop).

        Start: I_T = (1 − ᾱ_T + c_T)·I_in + s·ε — with EC on this is the released (1 − δ̄_T)·I_in + 0.1·ε
        (``start_noise_std`` s = 0.1: the released sampler starts far below the trained noise level β̄_T ≈ 1).
        Step t → n:  I_n = I_t − (ᾱ_t − ᾱ_n)·Î_res + (δ̄_t − δ̄_n)·I_in   (plus (ᾱ_t − ᾱ_n)·I_in without EC),
        with Î_res clamped to [−1, 1]. Last step: clamp(I_in − Î_res, −1, 1).
        """
        times = sampling_timesteps(steps or self.sampling_steps, self.timesteps)
        if noise is None:
            noise = torch.randn(x_in.shape, device=x_in.device, dtype=x_in.dtype, generator=generator)
        x = self.start(x_in, noise)
        trajectory = [x]
        batch = x_in.shape[0]
        for i, (t, t_next) in enumerate(zip(times[:-1], times[1:]), 1):
            t_vec = torch.full((batch,), t, device=x_in.device, dtype=torch.long)
            x = self.step(x, self.predict_residual(net, x, x_in, t_vec), x_in, t, t_next)
            trajectory.append(x)
            if callback is not None:
                callback(i, len(times) - 1)
        return trajectory if return_trajectory else x
