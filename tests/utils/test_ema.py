import pytest
import torch
from torch import nn

from src.utils.ema import EMA


def test_ema_copies_during_warmup_then_averages_every_n_steps():
    net = nn.Linear(2, 2)
    ema = EMA(net, decay=0.995, update_every=10, update_after_step=100)
    for step in range(101):  # updates at steps 0, 10, ..., 100 copy the weights
        with torch.no_grad():
            net.weight.fill_(float(step))
        ema.update(net)
    assert ema.averaged.weight[0, 0].item() == 100.0
    for _ in range(101, 110):  # not on a multiple of 10: untouched
        ema.update(net)
    assert ema.averaged.weight[0, 0].item() == 100.0
    with torch.no_grad():
        net.weight.fill_(200.0)
    ema.step.fill_(111)  # as ema_pytorch: the decay is read after the step counter moved past this update
    decay = ema.current_decay()
    assert decay == pytest.approx(1 - (1 + 111 - 100 - 1) ** (-2 / 3))
    ema.step.fill_(110)
    ema.update(net)
    assert ema.averaged.weight[0, 0].item() == pytest.approx(decay * 100 + (1 - decay) * 200, rel=1e-5)


def test_decay_is_capped_and_copy_is_frozen():
    ema = EMA(nn.Linear(2, 2), decay=0.995)
    ema.step.fill_(10**6)
    assert ema.current_decay() == 0.995
    assert not any(p.requires_grad for p in ema.averaged.parameters())
    ema.train()
    assert not ema.averaged.training
