"""MCMC diagnostics against pyro.ops.stats, independent SciPy references and known chain properties."""

import numpy as np
import pytest
import torch
from scipy import stats

from symgen import diagnostics as dg

ps = pytest.importorskip("pyro.ops.stats")


def ar1_chains(n_chains: int, n_draws: int, phi: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Stationary AR(1) chains x_t = phi x_{t-1} + eps_t, one phi per coordinate: (n_chains, n_draws, D)."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n_chains, n_draws, len(phi), generator=g, dtype=torch.float64)
    x = torch.empty_like(eps)
    x[:, 0] = eps[:, 0] / (1 - phi**2).sqrt()
    for t in range(1, n_draws):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


PHI = torch.tensor([0.0, 0.5, 0.9], dtype=torch.float64)


@pytest.fixture(scope="module")
def chains() -> torch.Tensor:
    return ar1_chains(4, 501, PHI)  # odd length exercises the split


def test_classic_and_split_rhat_match_pyro(chains):
    torch.testing.assert_close(dg.rhat(chains), ps.gelman_rubin(chains), rtol=1e-2, atol=0)
    torch.testing.assert_close(dg.split_rhat(chains), ps.split_gelman_rubin(chains), rtol=1e-2, atol=0)


def test_rhat_matches_ntebm_appendix_formula(chains):
    x = chains.numpy()
    m, n = x.shape[:2]
    s_w2 = x.var(axis=1, ddof=1).mean(axis=0)
    s_b2 = n / (m - 1) * ((x.mean(axis=1) - x.mean(axis=(0, 1))) ** 2).sum(axis=0)
    expected = np.sqrt(((n - 1) / n * s_w2 + s_b2 / n) / s_w2)
    np.testing.assert_allclose(dg.rhat(chains).numpy(), expected, rtol=1e-10)


def test_ess_and_autocorrelation_match_pyro(chains):
    torch.testing.assert_close(
        dg.effective_sample_size(chains), ps.effective_sample_size(chains), rtol=1e-2, atol=0
    )
    torch.testing.assert_close(
        dg.autocorrelation(chains, dim=1), ps.autocorrelation(chains, dim=1), rtol=0, atol=1e-8
    )
    y = chains.transpose(0, 1)  # another time axis
    torch.testing.assert_close(dg.autocorrelation(y, dim=0), ps.autocorrelation(y, dim=0), rtol=0, atol=1e-8)


def _scipy_rank_normalize(x: np.ndarray) -> np.ndarray:
    """Reference z-scores of Vehtari et al. (2021), Eq. 14, with SciPy's average ranks."""
    flat = x.reshape(-1, *x.shape[2:])
    ranks = stats.rankdata(flat, axis=0)
    return stats.norm.ppf((ranks - 0.375) / (flat.shape[0] + 0.25)).reshape(x.shape)


def _split(x: np.ndarray) -> torch.Tensor:
    half = x.shape[1] // 2
    return torch.from_numpy(np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0))


def test_rank_normalized_diagnostics_match_scipy_pyro_reference(chains):
    x = chains.numpy().copy()
    x[:, :100, 1] = np.round(x[:, :100, 1])  # ties must get average ranks
    xt = torch.from_numpy(x)
    torch.testing.assert_close(dg.rank_normalize(xt), torch.from_numpy(_scipy_rank_normalize(x)))
    bulk = ps.split_gelman_rubin(torch.from_numpy(_scipy_rank_normalize(x)))
    folded = np.abs(x - np.median(x.reshape(-1, x.shape[2]), axis=0))
    tail = ps.split_gelman_rubin(torch.from_numpy(_scipy_rank_normalize(folded)))
    torch.testing.assert_close(dg.rank_normalized_rhat(xt), torch.maximum(bulk, tail), rtol=1e-2, atol=0)

    ref_bulk = ps.effective_sample_size(torch.from_numpy(_scipy_rank_normalize(_split(x).numpy())))
    torch.testing.assert_close(dg.ess_bulk(xt), ref_bulk, rtol=1e-2, atol=0)

    split = _split(x).numpy()
    q = np.quantile(split.reshape(-1, x.shape[2]), [0.05, 0.95], axis=0)
    ess_q = [ps.effective_sample_size(torch.from_numpy((split <= qi).astype(float))) for qi in q]
    torch.testing.assert_close(dg.ess_tail(xt), torch.minimum(*ess_q), rtol=1e-2, atol=0)


def test_rank_diagnostics_invariant_to_monotone_transforms(chains):
    torch.testing.assert_close(dg.ess_bulk(chains.exp()), dg.ess_bulk(chains))
    torch.testing.assert_close(dg.ess_tail(chains.exp()), dg.ess_tail(chains))


def test_rhat_near_one_for_independent_gaussian_chains():
    torch.manual_seed(0)
    x = torch.randn(4, 1000, 20)
    for fn in (dg.rhat, dg.split_rhat, dg.rank_normalized_rhat):
        assert (fn(x) < 1.01).all(), fn.__name__


def test_rhat_flags_chains_stuck_in_different_modes():
    torch.manual_seed(0)
    modes = torch.tensor([-3.0, 3.0, -3.0, 3.0]).view(4, 1, 1)
    x = modes + 0.5 * torch.randn(4, 500, 5)
    for fn in (dg.rhat, dg.split_rhat, dg.rank_normalized_rhat):
        assert (fn(x) > 1.2).all(), fn.__name__


def test_rank_normalized_rhat_detects_scale_mismatch_that_classic_rhat_misses():
    # Vehtari et al. (2021), Sec. 4.1: equal means, different variances.
    torch.manual_seed(0)
    scale = torch.tensor([1.0, 1.0, 3.0, 3.0]).view(4, 1, 1)
    x = scale * torch.randn(4, 1000, 10)
    assert (dg.split_rhat(x) < 1.01).all()
    assert (dg.rank_normalized_rhat(x) > 1.02).all()


def test_ess_and_autocorrelation_of_ar1_match_theory():
    phi = torch.tensor([0.0, 0.5], dtype=torch.float64)
    x = ar1_chains(4, 4000, phi, seed=1)
    # ESS = S (1 - phi) / (1 + phi); relative MC error of the estimator is a few percent here.
    expected = 4 * 4000 * (1 - phi) / (1 + phi)
    torch.testing.assert_close(dg.effective_sample_size(x), expected, rtol=0.12, atol=0)
    torch.testing.assert_close(dg.ess_bulk(x), expected, rtol=0.12, atol=0)
    rho = dg.autocorrelation(x, dim=1).mean(dim=0)[1:4]  # lags 1..3, s.e. ~ 1/sqrt(16000)
    torch.testing.assert_close(
        rho[:, 1], 0.5 ** torch.arange(1.0, 4.0, dtype=torch.float64), rtol=0, atol=0.03
    )
    assert rho[:, 0].abs().max() < 0.03


def test_autocorrelation_of_constant_is_one():
    assert (dg.autocorrelation(torch.ones(2, 10, 3)) == 1).all()


def test_summarize_keys_and_shapes(chains):
    out = dg.summarize(chains)
    assert set(out) == {"mean", "std", "rhat", "ess_bulk", "ess_tail"}
    assert all(v.shape == (3,) for v in out.values())
    torch.testing.assert_close(out["mean"], chains.reshape(-1, 3).mean(0))


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="n_chains, n_draws"):
        dg.rhat(torch.randn(10))
    with pytest.raises(ValueError, match="at least 2 chains"):
        dg.rhat(torch.randn(1, 10))
    with pytest.raises(ValueError, match="4 draws"):
        dg.split_rhat(torch.randn(2, 3))
    with pytest.raises(ValueError, match="prob"):
        dg.ess_tail(torch.randn(2, 10), prob=0.7)
