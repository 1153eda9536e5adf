"""The discrete diffusion process (symgen.diffusion) against closed forms, the VP SDE and Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch

from symgen.diffusion import DiffusionSchedule, vp_schedule, vp_variance


@pytest.mark.parametrize("T", [1, 2, 4, 8])
def test_schedule_matches_vp_sde_marginals(T: int) -> None:
    """1 - alpha_bar_t equals the VP SDE's variance at t/T (Eq. 6.14), checked independently by quadrature
    of beta(s) for the mean coefficient exp(-1/2 int beta), and beta_t is Eq. (6.15)."""
    bmin, bmax = 0.1, 20.0
    sched = vp_schedule(T, bmin, bmax)
    for t in range(1, T + 1):
        s = torch.linspace(0, t / T, 20001, dtype=torch.float64)
        integral = torch.trapezoid(bmin + s * (bmax - bmin), s)
        assert float(sched.alphas_bar[t]) == pytest.approx(math.exp(-integral), rel=1e-5)
        assert float(1 - sched.alphas_bar[t]) == pytest.approx(float(vp_variance(t / T)), rel=1e-5)
    # Eq. (6.15): beta_t in closed form
    t = torch.arange(1, T + 1, dtype=torch.float64)
    beta = 1 - torch.exp(-bmin / T - 0.5 * (bmax - bmin) * (2 * t - 1) / T**2)
    torch.testing.assert_close(sched.betas.double(), beta, rtol=1e-5, atol=1e-7)


def test_schedule_matches_simulated_vp_sde() -> None:
    """Euler-Maruyama of dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw (Eq. 2.67) from x(0) = 1 on 20000 paths:
    the mean and variance at t' = t / T match q(x_t | x_0) of the T = 4 schedule."""
    bmin, bmax, T = 0.1, 20.0, 4
    sched = vp_schedule(T, bmin, bmax)
    gen = torch.Generator().manual_seed(0)
    x = torch.ones(20000, dtype=torch.float64)
    n = 250  # Euler steps per diffusion step
    dt = 1.0 / (T * n)
    for t in range(1, T + 1):
        for i in range(n):
            b = bmin + ((t - 1) * n + i + 0.5) * dt * (bmax - bmin)
            x = x - 0.5 * b * x * dt + math.sqrt(b * dt) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        ab = float(sched.alphas_bar[t])
        assert float(x.mean()) == pytest.approx(math.sqrt(ab), abs=0.02)
        assert float(x.var()) == pytest.approx(1 - ab, rel=0.05, abs=0.01)


def test_t1000_is_ddpm_linear_schedule() -> None:
    """With T = 1000 the discretised VP SDE gives DDPM's linear betas 1e-4 .. 0.02 (at mid-step times)."""
    sched = vp_schedule(1000)
    assert float(sched.betas[0]) == pytest.approx(1e-4 + 0.5 * 19.9 / 1000**2, rel=0.01)
    assert float(sched.betas[-1]) == pytest.approx(0.02, rel=0.02)


def test_forward_marginal_and_step_by_monte_carlo() -> None:
    """q_sample has the moments of Eq. (2.46); chaining q_step T times from x_0 gives the same marginal."""
    sched = vp_schedule(4)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.full((40000, 1), 0.7)
    for t in range(1, 5):
        ab = float(sched.alphas_bar[t])
        xt = sched.q_sample(x0, torch.full((len(x0),), t), generator=gen)
        assert float(xt.mean()) == pytest.approx(math.sqrt(ab) * 0.7, abs=0.015)
        assert float(xt.var()) == pytest.approx(1 - ab, rel=0.03, abs=1e-4)
    x = x0
    for t in range(1, 5):
        x = sched.q_step(x, torch.full((len(x),), t), generator=gen)
    assert float(x.mean()) == pytest.approx(math.sqrt(float(sched.alphas_bar[4])) * 0.7, abs=0.015)
    assert float(x.var()) == pytest.approx(1 - float(sched.alphas_bar[4]), rel=0.03)


@pytest.mark.parametrize("t", [2, 3, 4])
def test_posterior_matches_closed_form_by_monte_carlo(t: int) -> None:
    """Pairs (x_{t-1}, x_t) from the forward process (Algorithm 1 step 2) given x_0: regressing x_{t-1} on
    x_t recovers the posterior mean coefficients and the residual variance beta_tilde (Eq. 2.51); and
    x_t ~ q(x_t|x_0) followed by the posterior sample reproduces the forward joint's moments."""
    sched = vp_schedule(4)
    gen = torch.Generator().manual_seed(t)
    n, x0v = 200000, 0.5
    x0 = torch.full((n, 1), x0v, dtype=torch.float64)
    tt = torch.full((n,), t)
    x_prev, xt = sched.q_pair(x0, tt, generator=gen)
    # least squares x_prev ~ a + b * xt; for fixed x0 the posterior mean is c0 * x0 + c1 * xt
    design = torch.cat([torch.ones_like(xt), xt], 1)
    coef = torch.linalg.lstsq(design, x_prev).solution.flatten()
    resid = (x_prev - design @ coef[:, None]).var()
    mean_at_0, var = sched.posterior(x0[:1], torch.zeros(1, 1, dtype=torch.float64), tt[:1])
    mean_at_1, _ = sched.posterior(x0[:1], torch.ones(1, 1, dtype=torch.float64), tt[:1])
    c1 = float(mean_at_1 - mean_at_0)
    assert float(coef[1]) == pytest.approx(c1, abs=0.01)
    assert float(coef[0]) == pytest.approx(float(mean_at_0), abs=0.01)
    assert float(resid) == pytest.approx(float(var), rel=0.03)
    # the other direction: x_t ~ q(x_t|x0), then x_{t-1} ~ q(x_{t-1}|x_t, x0) has the forward joint
    xt2 = sched.q_sample(x0, tt, generator=gen)
    xp2 = sched.posterior_sample(x0, xt2, tt, generator=gen)
    ab_prev = float(sched.alphas_bar[t - 1])
    assert float(xp2.mean()) == pytest.approx(math.sqrt(ab_prev) * x0v, abs=0.01)
    assert float(xp2.var()) == pytest.approx(1 - ab_prev, rel=0.03)
    cov_fwd = float(((x_prev - x_prev.mean()) * (xt - xt.mean())).mean())
    cov_post = float(((xp2 - xp2.mean()) * (xt2 - xt2.mean())).mean())
    assert cov_post == pytest.approx(cov_fwd, rel=0.03)


def test_posterior_at_t1_returns_x0_and_eps_round_trip() -> None:
    sched = vp_schedule(4)
    x0, xt = torch.randn(5, 3), torch.randn(5, 3)
    one = torch.ones(5, dtype=torch.long)
    torch.testing.assert_close(sched.posterior_sample(x0, xt, one), x0)
    t = torch.tensor([1, 2, 3, 4, 4])
    eps = sched.predict_eps(xt, t, x0)
    torch.testing.assert_close(sched.predict_x0(xt, t, eps), x0, rtol=1e-4, atol=1e-5)


def test_respace_keeps_levels_and_labels() -> None:
    sched = vp_schedule(1000)
    sub = sched.respace(10)
    assert sub.T == 10 and int(sub.times[-1]) == 1000 and int(sub.times[0]) == 100
    torch.testing.assert_close(sub.alphas_bar[1:], sched.alphas_bar[sub.times])
    assert sched.respace(1000).T == 1000
    with pytest.raises(ValueError, match="steps"):
        sched.respace(0)


def test_bad_input_names_the_key() -> None:
    with pytest.raises(ValueError, match="T"):
        vp_schedule(0)
    with pytest.raises(ValueError, match="beta_min must be < beta_max"):
        vp_schedule(4, beta_min=20.0, beta_max=0.1)
    with pytest.raises(ValueError, match="beta_min"):
        vp_schedule(4, beta_min=float("nan"))
    with pytest.raises(ValueError, match="strictly decreasing"):
        DiffusionSchedule([0.5, 0.7])
    with pytest.raises(ValueError, match="t must lie in"):
        vp_schedule(4).q_step(torch.zeros(2, 2), torch.tensor([0, 5]))
