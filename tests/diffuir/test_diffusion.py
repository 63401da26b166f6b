import pytest
import torch
from torch import nn

from src.diffuir.diffusion import ResidualDiffusion
from src.diffuir.unet import DiffUIRUNet


class Oracle(nn.Module):
    """A 'network' that returns the true residual: isolates the sampler's arithmetic from learning."""

    def __init__(self, residual: torch.Tensor, in_channels: int = 6):
        super().__init__()
        self.residual, self.in_channels = residual, in_channels
        self.calls: list[float] = []

    def forward(self, x, time):
        self.calls.append(float(time[0]))
        return self.residual


def _images(shape=(2, 3, 16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g) * 2 - 1
    x_in = (x0 + 0.3 * torch.randn(shape, generator=g)).clamp(-1, 1)
    return x0, x_in


def test_forward_endpoint_is_shared_distribution():
    """I_T ≈ (1 − δ̄_T)·I_in + β̄_T·ε (Eq. 4 at t = T): check mean and noise std over many draws."""
    d = ResidualDiffusion()
    x0, x_in = _images((1, 3, 8, 8))
    n = 4000
    t = torch.full((n,), 999)
    noise = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    xt = d.q_sample(x0.expand(n, -1, -1, -1), x_in.expand(n, -1, -1, -1), t, noise)
    exact_mean = x0 + d.alpha_bar[999] * (x_in - x0) - d.delta_bar[999] * x_in
    assert (xt.mean(0) - exact_mean).abs().max() < 0.07
    assert (exact_mean - (1 - d.delta_bar[999]) * x_in).abs().max() < 2 * (1 - d.alpha_bar[999]) + 1e-6
    assert xt.std(0).mean().item() == pytest.approx(d.beta_bar[999].item(), rel=0.03)


@pytest.mark.parametrize("ec,sdt,target", [(True, False, "x_in"), (False, False, "zero")])
def test_ablation_endpoints(ec, sdt, target):
    d = ResidualDiffusion(explicit_condition=ec, shared_distribution=sdt)
    x0, x_in = _images((1, 3, 8, 8))
    t = torch.full((1,), 999)
    mean = d.q_sample(x0, x_in, t, torch.zeros_like(x0))
    expected = x_in if target == "x_in" else torch.zeros_like(x0)
    assert (mean - expected).abs().max() < 2 * (1 - d.alpha_bar[999]) + 1e-6
    if not ec:  # −EC & SDT is DDPM: √ā·I_0 + √(1 − ā)·ε
        t = torch.tensor([400])
        eps = torch.randn_like(x0)
        abar = (1 - d.alpha_bar[400]) ** 2
        torch.testing.assert_close(d.q_sample(x0, x_in, t, eps), abar.sqrt() * x0 + (1 - abar).sqrt() * eps)


@pytest.mark.parametrize("ec,sdt", [(True, True), (True, False), (False, False)])
def test_sampler_with_oracle_follows_eq8_and_recovers_x0(ec, sdt):
    d = ResidualDiffusion(explicit_condition=ec, shared_distribution=sdt)
    x0, x_in = _images()
    oracle = Oracle(x_in - x0)
    noise = torch.randn_like(x0)
    traj = d.sample(oracle, x_in, noise=noise, return_trajectory=True)
    assert len(traj) == 4
    assert oracle.calls == pytest.approx([d.alpha_bar[t].item() * 1000 for t in (999, 665, 332)])
    torch.testing.assert_close(traj[-1], x0)
    # intermediate states: I_n = I_T − (ᾱ_T − ᾱ_n)·I_res + (δ̄_T − δ̄_n)·I_in (+ (ᾱ_T − ᾱ_n)·I_in without EC)
    for state, n in zip(traj[1:3], (665, 332)):
        da, dd = d.alpha_bar[999] - d.alpha_bar[n], d.delta_bar[999] - d.delta_bar[n]
        extra = 0 if ec else da
        torch.testing.assert_close(state, traj[0] - da * (x_in - x0) + (dd + extra) * x_in, atol=1e-5, rtol=0)
    start = (1 - d.delta_bar[999]) if ec else (1 - d.alpha_bar[999] - d.delta_bar[999])
    torch.testing.assert_close(traj[0], start * x_in + 0.1 * noise)


def test_sampler_shapes_range_determinism_and_steps():
    torch.manual_seed(0)
    net = DiffUIRUNet(dim=16, dim_mults=(1, 1), in_channels=6).eval()
    d = ResidualDiffusion(sampling_steps=3)
    _, x_in = _images((1, 3, 21, 30))
    out1 = d.sample(net, x_in, generator=torch.Generator().manual_seed(7))
    out2 = d.sample(net, x_in, generator=torch.Generator().manual_seed(7))
    out3 = d.sample(net, x_in, generator=torch.Generator().manual_seed(8))
    assert out1.shape == x_in.shape
    assert out1.min() >= -1 and out1.max() <= 1
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    assert len(d.sample(net, x_in, steps=5, return_trajectory=True)) == 6


def test_no_implicit_condition_feeds_x_t_only():
    d = ResidualDiffusion(implicit_condition=False, shared_distribution=False)
    assert d.network_in_channels == 3
    net = DiffUIRUNet(dim=16, dim_mults=(1, 1), in_channels=3)
    x0, x_in = _images()
    assert torch.isfinite(d.loss(net, x0, x_in))


def test_training_steps_make_loss_fall():
    torch.manual_seed(0)
    net = DiffUIRUNet(dim=16, dim_mults=(1, 1), in_channels=6)
    d = ResidualDiffusion()
    x0, x_in = _images((4, 3, 16, 16))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)

    def eval_loss():
        with torch.no_grad():
            return d.loss(net, x0, x_in, generator=torch.Generator().manual_seed(123)).item()

    before = eval_loss()
    for _ in range(40):
        opt.zero_grad()
        d.loss(net, x0, x_in, generator=g).backward()
        opt.step()
    assert eval_loss() < 0.6 * before


class Recorder(nn.Module):
    """Wraps a network and records what it was fed (input, time, whether grad was on)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x, time):
        self.seen.append((x.detach().clone(), float(time[0]), torch.is_grad_enabled()))
        return self.net(x, time)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_sampler_path_loss_trains_on_the_inputs_the_sampler_meets(k, monkeypatch):
    """train_times='sampler': the graded forward sees exactly the I_t of sample() at its k-th time (same ε, the
    network's own earlier steps, run without gradient), and the loss is L1 to the true residual there."""
    torch.manual_seed(0)
    net = Recorder(DiffUIRUNet(dim=8, dim_mults=(1, 1), in_channels=6).eval())
    d = ResidualDiffusion(train_times="sampler")
    x0, x_in = _images()
    monkeypatch.setattr(torch, "randint", lambda *a, **kw: torch.tensor([k]))  # the step drawn
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5))
    loss = d.loss(net, x0, x_in, generator=torch.Generator().manual_seed(5))
    fed = list(net.seen)
    assert [grad for *_, grad in fed] == [False] * k + [True]
    times = [float(d.alpha_bar[t]) * 1000 for t in (999, 665, 332)[:k + 1]]
    assert [time for _, time, _ in fed] == pytest.approx(times)
    net.seen.clear()
    trajectory = d.sample(net, x_in, noise=noise, return_trajectory=True)
    assert torch.allclose(fed[-1][0], torch.cat((trajectory[k], x_in), 1), atol=1e-6)
    expected = (net.net(torch.cat((trajectory[k], x_in), 1), torch.full((2,), fed[-1][1])) - (x_in - x0)).abs().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_sampler_path_training_makes_the_restored_output_better():
    """A few steps with train_times='sampler' lower the error of the 3-step sampler's output itself."""
    torch.manual_seed(0)
    net = DiffUIRUNet(dim=16, dim_mults=(1, 1), in_channels=6)
    d = ResidualDiffusion(train_times="sampler")
    x0, x_in = _images((4, 3, 16, 16))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))

    def output_error():
        return (d.sample(net, x_in, noise=noise) - x0).abs().mean().item()

    before = output_error()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        opt.zero_grad()
        d.loss(net, x0, x_in, generator=g).backward()
        opt.step()
    assert output_error() < 0.6 * before


def test_train_times_must_be_known():
    with pytest.raises(ValueError, match="diffusion.train_times='ddim': expected 'uniform'"):
        ResidualDiffusion(train_times="ddim")
