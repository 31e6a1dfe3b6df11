"""Flow-GRPO SDE step: ODE limit, log-probability, ratio, guards."""

from __future__ import annotations

import math

import pytest
import torch

from ml.models.sde import gaussian_log_prob, sde_kl, sde_std, sde_step, sde_timesteps

torch.set_num_threads(1)


def _xv(b: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 2, 4, 4, generator=g), torch.randn(b, 3, 2, 4, 4, generator=g)


def test_noise_scale_zero_is_euler_step() -> None:
    x, v = _xv()
    nxt, logp, mean, std = sde_step(x, v, 0.6, 0.45, noise_scale=0.0)
    torch.testing.assert_close(nxt, x + (0.45 - 0.6) * v)
    torch.testing.assert_close(mean, nxt)
    assert torch.all(std == 0) and torch.all(logp == 0)


def test_formula_and_log_prob_match_torch_normal() -> None:
    x, v = _xv()
    s, sn, a = torch.tensor([0.9, 0.5, 0.2]), torch.tensor([0.8, 0.4, 0.0]), 0.7
    noise = torch.randn_like(x)
    nxt, logp, mean, std = sde_step(x, v, s, sn, a, noise=noise)
    sb, snb = s.view(-1, 1, 1, 1, 1), sn.view(-1, 1, 1, 1, 1)
    sigma = a * torch.sqrt(sb / (1 - sb))
    ds = snb - sb
    exp_mean = x + (v + sigma**2 / (2 * sb) * (x + (1 - sb) * v)) * ds
    torch.testing.assert_close(mean, exp_mean)
    torch.testing.assert_close(std.expand_as(x), (sigma * torch.sqrt(-ds)).expand_as(x))
    torch.testing.assert_close(nxt, exp_mean + sigma * torch.sqrt(-ds) * noise)
    ref = torch.distributions.Normal(exp_mean, (sigma * torch.sqrt(-ds)).expand_as(x)).log_prob(nxt)
    torch.testing.assert_close(logp, ref.flatten(1).mean(1))
    # gaussian_log_prob agrees on arbitrary points too
    y = torch.randn_like(x)
    torch.testing.assert_close(gaussian_log_prob(y, mean, std),
                               torch.distributions.Normal(mean, std.expand_as(x)).log_prob(y).flatten(1).mean(1))


def test_ratio_is_one_when_policy_unchanged() -> None:
    x, v = _xv()
    gen = torch.Generator().manual_seed(3)
    nxt, logp_old, _, _ = sde_step(x, v, 0.7, 0.6, 0.7, generator=gen)
    _, logp_new, _, _ = sde_step(x, v.clone(), 0.7, 0.6, 0.7, prev_sample=nxt)
    assert torch.equal(torch.exp(logp_new - logp_old), torch.ones(3))
    # a changed policy changes the ratio
    _, logp_changed, _, _ = sde_step(x, v + 0.1, 0.7, 0.6, 0.7, prev_sample=nxt)
    assert not torch.allclose(logp_changed, logp_old)


def test_guards_s_one_and_s_next_zero_are_finite() -> None:
    x, v = _xv()
    for s, sn in [(1.0, 0.9), (1.0, 0.0), (0.1, 0.0), (0.0, 0.0)]:
        nxt, logp, mean, std = sde_step(x, v, s, sn, 0.7)
        for t in (nxt, logp, mean, std):
            assert torch.isfinite(t).all(), (s, sn)
    # at s = 1 the denominator uses s' (Flow-GRPO: sigmas[1])
    sigma, std = sde_std(1.0, 0.9, 0.7, x)
    assert float(sigma.flatten()[0]) == pytest.approx(0.7 * math.sqrt(1.0 / 0.1), rel=1e-5)
    assert float(std.flatten()[0]) == pytest.approx(0.7 * math.sqrt(10.0) * math.sqrt(0.1), rel=1e-5)
    sigma_e, _ = sde_std(1.0, 0.9, 0.7, x, eps=1e-3)
    assert float(sigma_e.flatten()[0]) == pytest.approx(0.7 * math.sqrt(1.0 / 1e-3), rel=1e-4)


def test_sde_preserves_marginals_of_a_gaussian_toy() -> None:
    """x0 ~ N(0, c^2): the exact velocity is known; SDE sampling must end near N(0, c^2)."""
    torch.manual_seed(0)
    c, n = 0.5, 20000
    grid = sde_timesteps(20)
    x = torch.randn(n, 1)
    for i in range(20):
        s = float(grid[i])
        var = (1 - s) ** 2 * c**2 + s**2
        # E[x0 | x_s] = (1 - s) c^2 / var * x ; E[e | x_s] = s / var * x ; v = E[e] - E[x0]
        v = (s - (1 - s) * c**2) / var * x
        x, _, _, _ = sde_step(x, v, s, float(grid[i + 1]), 0.7)
    assert float(x.std()) == pytest.approx(c, rel=0.08)
    assert abs(float(x.mean())) < 0.03


def test_kl_zero_for_same_means_and_matches_formula() -> None:
    x, v = _xv()
    _, _, mean, std = sde_step(x, v, 0.5, 0.4, 0.7)
    assert torch.all(sde_kl(mean, mean, std) == 0)
    m2 = mean + 0.05
    torch.testing.assert_close(sde_kl(m2, mean, std), (0.05**2 / (2 * std.flatten(1)[:, 0] ** 2)))


def test_timesteps_grid() -> None:
    g = sde_timesteps(4)
    torch.testing.assert_close(g, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    gs = sde_timesteps(4, shift=3.0)
    assert gs[0] == 1.0 and gs[-1] == 0.0 and torch.all(gs[1:] < gs[:-1])
