"""Gradient-flow ODE against ground truth: closed-form linear flows and autograd Jacobians."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from symgen.densities import standard_normal_log_prob
from symgen.samplers import GradientFlow

DT = torch.float64


@pytest.fixture(autouse=True)
def _seed_one_thread():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spd(d: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=DT))
    return q @ torch.diag(torch.linspace(0.5, 2.0, d, dtype=DT)) @ q.T


class MLPEnergy(torch.nn.Module):
    """A smooth random negative energy f(x) = w2 . tanh(W1 x + b) - |x|^2 / 4 in float64."""

    def __init__(self, d: int, hidden: int = 16) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(d, hidden).double()
        self.out = torch.nn.Linear(hidden, 1).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.lin(x))).squeeze(1) - 0.25 * (x**2).sum(1)


def test_linear_flow_matches_closed_form():
    """log p = -x^T A x / 2: x(T) = expm(-A T) x0 and the log-density changes by T tr(A)."""
    a = _spd(3)
    flow = GradientFlow(lambda x: -0.5 * ((x @ a) * x).sum(1), t_end=0.7, rtol=1e-9, atol=1e-10)
    x0 = torch.randn(5, 3, dtype=DT)
    m = torch.linalg.matrix_exp(-0.7 * a)
    x1, delta = flow.forward_with_delta(x0)
    torch.testing.assert_close(x1, x0 @ m.T, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(delta, torch.full((5,), 0.7 * float(torch.trace(a)), dtype=DT))
    # the density of the pushforward of N(0, I) is N(0, M M^T)
    ref = MultivariateNormal(torch.zeros(3, dtype=DT), m @ m.T).log_prob(x1)
    torch.testing.assert_close(flow.log_prob(x1), ref, rtol=1e-7, atol=1e-7)


def test_reverse_inverts_forward_and_density_matches_autograd_jacobian():
    f = MLPEnergy(2)
    flow = GradientFlow(f, t_end=1.0, rtol=1e-8, atol=1e-9)
    x0 = 1.5 * torch.randn(6, 2, dtype=DT)
    x1, delta = flow.forward_with_delta(x0)
    back, delta_back = flow.reverse_with_delta(x1)
    assert (back - x0).abs().max() < 1e-4
    torch.testing.assert_close(delta_back, delta, rtol=1e-5, atol=1e-5)
    assert (x1 - x0).abs().max() > 0.1  # the flow really moved the points

    # change of variables: log p_T(x_T) - log p_0(x_0) = -log|det d x_T / d x_0|
    diff_flow = GradientFlow(f, t_end=1.0, rtol=1e-8, atol=1e-9, differentiable=True)
    for b in range(x0.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: diff_flow.forward(v[None])[0], x0[b])
        logdet = torch.linalg.slogdet(jac)[1]
        assert abs(float(delta[b] + logdet)) < 1e-4
    torch.testing.assert_close(flow.log_prob(x1), standard_normal_log_prob(x0) + delta, rtol=1e-6, atol=1e-6)


def test_hutchinson_estimator_is_unbiased():
    f = MLPEnergy(3)
    point = torch.randn(1, 3, dtype=DT)
    exact = GradientFlow(f, t_end=0.5, rtol=1e-7, atol=1e-8).forward_with_delta(point)[1]
    hutch = GradientFlow(f, t_end=0.5, rtol=1e-7, atol=1e-8, trace="hutchinson")
    x1, est = hutch.forward_with_delta(point.expand(4000, 3))
    torch.testing.assert_close(x1, x1[:1].expand(4000, 3))  # the probes do not change the path
    se = est.std() / math.sqrt(est.numel())
    assert abs(float(est.mean() - exact)) < 5 * float(se)
    assert float(est.std()) > 0  # it is an estimate, not the exact value


def test_gradients_reach_energy_parameters_only_when_differentiable():
    f = MLPEnergy(2)
    x0 = torch.randn(4, 2, dtype=DT)
    out = GradientFlow(f, t_end=0.3).forward(x0)
    assert out.grad_fn is None and f.lin.weight.grad is None
    x1, delta = GradientFlow(f, t_end=0.3, differentiable=True).forward_with_delta(x0)
    (x1.sum() + delta.sum()).backward()
    assert f.lin.weight.grad is not None and f.lin.weight.grad.abs().sum() > 0


def test_bad_arguments():
    f = MLPEnergy(2)
    with pytest.raises(ValueError, match="trace"):
        GradientFlow(f, trace="skilling")
    with pytest.raises(ValueError, match="t_end"):
        GradientFlow(f, t_end=0.0)
    with pytest.raises(ValueError, match="shape"):
        GradientFlow(f).forward(torch.randn(3, dtype=DT))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        GradientFlow(lambda x: x).forward(torch.randn(3, 2, dtype=DT))
