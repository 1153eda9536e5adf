"""Density builders vs ground truth: torch.distributions, LFBM's gradient formula, change of variables."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from symgen.densities import (
    check_log_prob_output,
    ebm_log_prob,
    gaussian_log_likelihood,
    magnetized_log_prob,
    posterior_log_prob,
    standard_normal_log_prob,
    tilted_latent_log_prob,
)


@pytest.fixture(autouse=True)
def _seed_and_float64():
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_standard_normal_matches_torch():
    z = torch.randn(5, 2, 3)
    ref = Normal(0.0, 1.0).log_prob(z).sum(dim=(1, 2))
    torch.testing.assert_close(standard_normal_log_prob(z), ref)


def test_gaussian_log_likelihood_with_constants_matches_torch():
    x, mean = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    ref = Normal(mean, 0.7).log_prob(x).sum(dim=(1, 2))
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, 0.7, constants=True), ref)
    # without constants only the quadratic term remains
    quad = -((x - mean) ** 2).sum(dim=(1, 2)) / (2 * 0.7**2)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, 0.7), quad)


def test_masked_likelihood_uses_only_observed_entries():
    x, mean = torch.randn(3, 8), torch.randn(3, 8)
    mask = (torch.rand(3, 8) > 0.4).double()
    out = gaussian_log_likelihood(x, mean, 0.5, mask=mask, constants=True)
    for b in range(3):
        seen = mask[b].bool()
        ref = Normal(mean[b, seen], 0.5).log_prob(x[b, seen]).sum()
        torch.testing.assert_close(out[b], ref)
    # an event-shaped mask broadcasts over chains
    shared = mask[0]
    torch.testing.assert_close(
        gaussian_log_likelihood(x, mean, 0.5, mask=shared),
        gaussian_log_likelihood(x, mean, 0.5, mask=shared.expand(3, 8)),
    )


def test_posterior_gradient_matches_lfbm_formula():
    """grad log p(z|x) = grad l(z) + sigma^-2 (m*(x - g(z)))^T dg/dz (LFBM Eq. (8) and Sec. 4.3)."""
    w = torch.randn(6, 3)

    def g(z):
        return torch.tanh(z @ w.T)

    def prior(z):
        return -0.5 * (z**2).sum(1) - 0.1 * (z**4).sum(1)

    x, z, sigma = torch.randn(4, 6), torch.randn(4, 3), 0.3
    mask = (torch.rand(4, 6) > 0.3).double()
    lp = posterior_log_prob(prior, g, x, sigma, mask=mask)
    zr = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(lp(zr).sum(), zr)
    for b in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: g(v[None])[0], z[b])  # (6, 3)
        expected = -z[b] - 0.4 * z[b] ** 3 + (mask[b] * (x[b] - g(z[b : b + 1])[0])) @ jac / sigma**2
        torch.testing.assert_close(grad[b], expected)


def test_ebm_with_reference_adds_log_reference():
    f = lambda x: -(x**2).sum(1).sqrt()  # noqa: E731
    x = torch.randn(7, 2)
    ref = MultivariateNormal(torch.zeros(2), torch.eye(2))
    torch.testing.assert_close(ebm_log_prob(f, ref.log_prob)(x), f(x) + ref.log_prob(x))
    torch.testing.assert_close(ebm_log_prob(lambda x: f(x)[:, None])(x), f(x))  # (B, 1) is accepted


def test_tilted_latent_is_change_of_variables_of_tilted_flow():
    """NT-EBM Eq. (9): p_x(g(z)) |det dg/dz| ∝ q0(z) exp(f(g(z))) for p_x ∝ exp(f) q_alpha."""
    a = torch.tensor([[1.5, 0.3], [-0.4, 0.8]])
    b = torch.tensor([0.5, -1.0])
    g = lambda z: z @ a.T + b  # noqa: E731
    q_alpha = MultivariateNormal(b, a @ a.T)  # pushforward of N(0, I) under g
    f = lambda x: torch.sin(x[:, 0]) * x[:, 1]  # noqa: E731
    z = torch.randn(10, 2)
    direct = f(g(z)) + q_alpha.log_prob(g(z)) + torch.linalg.slogdet(a)[1]
    latent = tilted_latent_log_prob(f, g)(z)
    diff = direct - latent
    torch.testing.assert_close(diff, diff[0].expand(10))  # equal up to the normalizing constant
    # a generator returning (x, ladj) works the same
    torch.testing.assert_close(tilted_latent_log_prob(f, lambda z: (g(z), None))(z), latent)


def test_magnetized_gradient_is_unit_field_toward_target():
    target = torch.tensor([1.0, -2.0, 0.5])
    base = lambda z: -0.5 * (z**2).sum(1)  # noqa: E731
    z = torch.randn(6, 3).requires_grad_(True)
    (grad,) = torch.autograd.grad(magnetized_log_prob(base, target, 0.7)(z).sum(), z)
    diff = (z - target).detach()
    expected = -z.detach() - 0.7 * diff / diff.norm(dim=1, keepdim=True)
    torch.testing.assert_close(grad, expected)


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="mean"):
        gaussian_log_likelihood(x, torch.randn(3, 5), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_log_likelihood(x, x, 0.0)
    with pytest.raises(ValueError, match="mask"):
        gaussian_log_likelihood(x, x, 1.0, mask=torch.ones(5))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        check_log_prob_output(torch.zeros(3, 1), x)
    with pytest.raises(ValueError, match="target"):
        magnetized_log_prob(lambda z: z.sum(1), torch.zeros(2), 1.0)(x)
    with pytest.raises(ValueError, match="gamma"):
        magnetized_log_prob(lambda z: z.sum(1), torch.zeros(4), -1.0)
    assert math.isfinite(float(standard_normal_log_prob(x).sum()))
