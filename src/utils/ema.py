"""Exponential moving average of a network's weights, with the warm-up of ema_pytorch's defaults.

The official DiffUIR trainer keeps an ``ema_pytorch.EMA(model, beta=0.995, update_every=10)`` and evaluates the
EMA weights. Its defaults: weights are copied (not averaged) for the first 100 updates; afterwards the decay is
min(beta, 1 − (1 + k)^(−2/3)) with k the number of updates past step 100; buffers are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Holds ``averaged``, a frozen copy of a network, updated with :meth:`update` once per optimiser step."""

    def __init__(self, net: nn.Module, decay: float = 0.995, update_every: int = 10, update_after_step: int = 100,
                 power: float = 2 / 3):
        super().__init__()
        self.decay, self.update_every = decay, update_every
        self.update_after_step, self.power = update_after_step, power
        self.averaged = copy.deepcopy(net).requires_grad_(False).eval()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        k = int(self.step.item()) - self.update_after_step - 1
        if k <= 0:
            return 0.0
        return min(self.decay, max(0.0, 1 - (1 + k) ** -self.power))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        step = int(self.step.item())
        self.step += 1
        if step % self.update_every != 0:
            return
        decay = 0.0 if step <= self.update_after_step else self.current_decay()
        for ema_p, p in zip(self.averaged.parameters(), net.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(self.averaged.buffers(), net.buffers()):
            ema_b.copy_(b)

    def train(self, mode: bool = True):  # the averaged copy always stays in eval mode
        super().train(mode)
        self.averaged.eval()
        return self
