r"""MCMC convergence diagnostics on torch tensors, batched over the dimensions of the state.

Chains use the layout of ``pyro.ops.stats``: a tensor ``x`` of shape ``(n_chains, n_draws, *dims)``
(chain dimension 0, draw dimension 1); every diagnostic returns a tensor of shape ``dims``, so one call
checks all coordinates of a latent vector or all pixels of an image at once.

Computed here:

* :func:`rhat` -- the classic Gelman-Rubin potential scale reduction factor (Appendix A.6 of the NT-EBM
  paper; Gelman & Rubin, 1992), and :func:`split_rhat`, the same on chains cut in halves;
* :func:`rank_normalized_rhat`, :func:`ess_bulk`, :func:`ess_tail` -- the rank-normalised diagnostics of
  Vehtari et al. (2021) that Stan, ArviZ and BlackJAX report;
* :func:`effective_sample_size` -- Geyer's initial monotone sequence estimator (Stan reference manual);
* :func:`autocorrelation` / :func:`autocovariance` along any dimension by FFT.

Hand-written because no maintained *torch* library offers the rank-normalised variants:
``pyro.ops.stats`` has the classic and split R-hat and ESS only (it is a test-time reference here),
and ArviZ/BlackJAX work on NumPy/JAX arrays.

References:
    Gelman & Rubin. Inference from iterative simulation using multiple sequences. Stat. Sci., 1992.
    Vehtari, Gelman, Simpson, Carpenter & Bürkner. Rank-normalization, folding, and localization: an
    improved R-hat for assessing convergence of MCMC. Bayesian Analysis, 2021. arXiv:1903.08008.
    Geyer. Practical Markov chain Monte Carlo. Stat. Sci., 1992.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "autocorrelation",
    "autocovariance",
    "rhat",
    "split_rhat",
    "split_chains",
    "rank_normalize",
    "rank_normalized_rhat",
    "effective_sample_size",
    "ess_bulk",
    "ess_tail",
    "summarize",
]


def _check_chains(x: Tensor, min_chains: int = 1, min_draws: int = 2) -> Tensor:
    """Validate the ``(n_chains, n_draws, *dims)`` layout and return a floating-point tensor."""
    if not isinstance(x, Tensor):
        raise ValueError(
            f"x must be a torch.Tensor of shape (n_chains, n_draws, *dims), got {type(x).__name__}"
        )
    if x.dim() < 2:
        raise ValueError(f"x must have shape (n_chains, n_draws, *dims), got shape {tuple(x.shape)}")
    if x.shape[0] < min_chains or x.shape[1] < min_draws:
        raise ValueError(
            f"x needs at least {min_chains} chains and {min_draws} draws (shape (n_chains, n_draws, *dims)), "
            f"got shape {tuple(x.shape)}"
        )
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def autocovariance(x: Tensor, dim: int = 1) -> Tensor:
    r"""Autocovariance along ``dim`` by FFT: lag :math:`t` is the mean of the :math:`N-t` lagged products.

    :math:`\hat\gamma_t = \frac{1}{N-t}\sum_{i=1}^{N-t}(x_i-\bar x)(x_{i+t}-\bar x)`, computed as the inverse
    FFT of the power spectrum of the centred, zero-padded signal (Wiener-Khinchin); this is the convention
    of ``pyro.ops.stats.autocovariance`` up to normalisation.

    Arguments:
        x: any tensor; ``x.size(dim) >= 1``.
        dim: the time dimension (1 for the ``(n_chains, n_draws, *dims)`` layout).

    Returns:
        A tensor shaped like ``x``; index ``t`` along ``dim`` holds the lag-``t`` autocovariance.
    """
    x = x if x.is_floating_point() else x.to(torch.get_default_dtype())
    xt = x.movedim(dim, -1)
    n = xt.shape[-1]
    centred = xt - xt.mean(dim=-1, keepdim=True)
    spectrum = torch.fft.rfft(centred, n=2 * n)
    acov = torch.fft.irfft(spectrum.real.square() + spectrum.imag.square(), n=2 * n)[..., :n]
    acov = acov / torch.arange(n, 0, -1, dtype=x.dtype, device=x.device)
    return acov.movedim(-1, dim)


def autocorrelation(x: Tensor, dim: int = 1) -> Tensor:
    r"""Autocorrelation :math:`\hat\rho_t=\hat\gamma_t/\hat\gamma_0` along ``dim`` (:func:`autocovariance`).

    Constant signals (:math:`\hat\gamma_0 = 0`) get autocorrelation 1 at every lag, as in
    ``pyro.ops.stats.autocorrelation``. This is the curve of Fig. 2(c-d) of the NT-EBM paper.

    Arguments:
        x: tensor, e.g. chains ``(n_chains, n_draws, *dims)``.
        dim: the time dimension (default 1, the draw dimension).

    Returns:
        A tensor shaped like ``x`` with ``1`` at lag 0.
    """
    acov = autocovariance(x, dim).movedim(dim, -1)
    var = acov[..., :1]
    constant = (var == 0).expand_as(acov)
    rho = acov / var.clamp(min=torch.finfo(acov.dtype).tiny)
    rho = torch.where(constant, torch.ones_like(rho), rho)
    return rho.movedim(-1, dim)


def _variances(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""Within-chain variance :math:`s_w^2` and pooled estimate :math:`\hat\sigma^2` (NT-EBM Appendix A.6).

    :math:`s_w^2` is the mean of the unbiased per-chain variances and
    :math:`\hat\sigma^2=\frac{n-1}{n}s_w^2+\frac{s_b^2}{n}` with
    :math:`s_b^2/n=\frac{1}{m-1}\sum_i(\bar X_i-\bar X_{\cdot\cdot})^2` the variance of the chain means.
    With a single chain, :math:`\hat\sigma^2 = s_w^2 = \frac{n-1}{n}\cdot` the chain variance.
    """
    n = x.shape[1]
    s_w2 = x.var(dim=1).mean(dim=0)
    sigma2 = (n - 1) / n * s_w2
    if x.shape[0] > 1:
        sigma2 = sigma2 + x.mean(dim=1).var(dim=0)
    else:
        s_w2 = sigma2
    return s_w2, sigma2


def rhat(x: Tensor) -> Tensor:
    r"""Classic Gelman-Rubin statistic :math:`\hat R=\sqrt{\hat\sigma^2/s_w^2}` (NT-EBM Appendix A.6).

    Values near 1 indicate that ``m`` chains of length ``n`` look alike; the NT-EBM paper (following
    Brooks & Gelman, 1998) reads :math:`\hat R < 1.2` as approximate convergence, Vehtari et al. (2021)
    recommend 1.01. Constant chains give NaN.

    Arguments:
        x: chains ``(n_chains >= 2, n_draws >= 2, *dims)``.

    Returns:
        :math:`\hat R` of shape ``dims``.
    """
    x = _check_chains(x, min_chains=2, min_draws=2)
    s_w2, sigma2 = _variances(x)
    return (sigma2 / s_w2).sqrt()


def split_chains(x: Tensor) -> Tensor:
    """Cut every chain into its first and last ``n_draws // 2`` draws (the middle draw of an odd chain is
    dropped), giving ``(2 * n_chains, n_draws // 2, *dims)``; the split detects trends within chains."""
    x = _check_chains(x, min_chains=1, min_draws=4)
    half = x.shape[1] // 2
    return torch.cat([x[:, :half], x[:, x.shape[1] - half :]], dim=0)


def split_rhat(x: Tensor) -> Tensor:
    r"""Split :math:`\hat R`: :func:`rhat` of the half-chains from :func:`split_chains`.

    Arguments:
        x: chains ``(n_chains >= 1, n_draws >= 4, *dims)``.

    Returns:
        Split :math:`\hat R` of shape ``dims`` (same as ``pyro.ops.stats.split_gelman_rubin``).
    """
    return rhat(split_chains(x))


def rank_normalize(x: Tensor) -> Tensor:
    r"""Normal scores of the pooled ranks: :math:`z=\Phi^{-1}\big((r-3/8)/(S+1/4)\big)` (Vehtari et al. 2021,
    Eq. 14), with :math:`r` the rank of each draw among all :math:`S` draws of all chains (ties get their
    average rank), computed separately for every coordinate in ``dims``.

    Arguments:
        x: chains ``(n_chains, n_draws, *dims)``.

    Returns:
        A tensor shaped like ``x``.
    """
    x = _check_chains(x, min_chains=1, min_draws=1)
    m, n = x.shape[:2]
    flat = x.reshape(m * n, -1).T.contiguous()  # (D, S)
    ordered = flat.sort(dim=-1).values
    lower = torch.searchsorted(ordered, flat, right=False)
    upper = torch.searchsorted(ordered, flat, right=True)
    ranks = (lower + 1 + upper).to(x.dtype) / 2
    z = torch.special.ndtri((ranks - 0.375) / (m * n + 0.25))
    return z.T.reshape(x.shape)


def rank_normalized_rhat(x: Tensor) -> Tensor:
    r"""Rank-normalised split :math:`\hat R` of Vehtari et al. (2021): the maximum of the bulk value
    (split :math:`\hat R` of the rank-normalised draws) and the tail value (the same on the folded draws
    :math:`|x-\mathrm{median}(x)|`), so that chains differing in location *or* scale are flagged.

    Arguments:
        x: chains ``(n_chains >= 1, n_draws >= 4, *dims)``.

    Returns:
        :math:`\hat R` of shape ``dims``; below 1.01 indicates convergence.
    """
    x = _check_chains(x, min_chains=1, min_draws=4)
    median = x.reshape(-1, *x.shape[2:]).median(dim=0).values
    bulk = split_rhat(rank_normalize(x))
    tail = split_rhat(rank_normalize((x - median).abs()))
    return torch.maximum(bulk, tail)


def effective_sample_size(x: Tensor) -> Tensor:
    r"""Effective sample size :math:`S/\hat\tau` by Geyer's initial monotone sequence (no split, no ranks).

    Multi-chain autocorrelation :math:`\hat\rho_t = 1-(s_w^2-\bar\gamma_t)/\hat\sigma^2` (Stan reference
    manual; :math:`\bar\gamma_t` the chain-averaged autocovariance), summed in pairs
    :math:`P_k=\hat\rho_{2k}+\hat\rho_{2k+1}` that are truncated at the first negative pair and made
    monotone; :math:`\hat\tau=-1+2\sum_k P_k`, bounded below by :math:`1/\log_{10}S` as in Stan.
    Matches ``pyro.ops.stats.effective_sample_size``.

    Arguments:
        x: chains ``(n_chains, n_draws >= 2, *dims)``.

    Returns:
        ESS of shape ``dims`` (NaN for constant draws).
    """
    x = _check_chains(x, min_chains=1, min_draws=2)
    m, n = x.shape[:2]
    s_w2, sigma2 = _variances(x)
    gamma = autocovariance(x, dim=1).mean(dim=0)  # (n, *dims)
    rho = 1 - (s_w2 - gamma) / sigma2
    rho[0] = 1.0
    pairs = rho[: 2 * (n // 2)].reshape(n // 2, 2, *rho.shape[1:]).sum(dim=1)
    tail = pairs[1:].clamp(min=0).cummin(dim=0).values
    tau = -1 + 2 * pairs[0] + 2 * tail.sum(dim=0)
    tau = tau.clamp(min=1 / math.log10(m * n)) if m * n > 1 else tau
    return m * n / tau


def ess_bulk(x: Tensor) -> Tensor:
    """Bulk effective sample size (Vehtari et al. 2021): :func:`effective_sample_size` of the
    rank-normalised split chains; it measures the efficiency of estimating the centre of the distribution.

    Arguments:
        x: chains ``(n_chains, n_draws >= 4, *dims)``.

    Returns:
        Bulk ESS of shape ``dims``.
    """
    return effective_sample_size(rank_normalize(split_chains(x)))


def ess_tail(x: Tensor, prob: float = 0.05) -> Tensor:
    """Tail effective sample size (Vehtari et al. 2021): the smaller ESS of the split-chain indicators
    ``x <= q_prob`` and ``x <= q_(1-prob)`` with pooled quantiles ``q``; it measures the efficiency of
    estimating the ``prob`` and ``1 - prob`` quantiles.

    Arguments:
        x: chains ``(n_chains, n_draws >= 4, *dims)``.
        prob: tail probability in ``(0, 0.5)`` (default 5%).

    Returns:
        Tail ESS of shape ``dims``.
    """
    if not 0.0 < prob < 0.5:
        raise ValueError(f"prob must be a tail probability in (0, 0.5), got {prob}")
    x = split_chains(x)
    pooled = x.reshape(-1, *x.shape[2:])
    q = torch.quantile(pooled, torch.tensor([prob, 1 - prob], dtype=x.dtype, device=x.device), dim=0)
    low = effective_sample_size((x <= q[0]).to(x.dtype))
    high = effective_sample_size((x <= q[1]).to(x.dtype))
    return torch.minimum(low, high)


def summarize(x: Tensor) -> dict[str, Tensor]:
    """Posterior-summary table of chains ``(n_chains, n_draws >= 4, *dims)``: ``mean``, ``std``, ``rhat``
    (rank-normalised), ``ess_bulk`` and ``ess_tail``, each of shape ``dims``."""
    x = _check_chains(x, min_chains=1, min_draws=4)
    pooled = x.reshape(-1, *x.shape[2:])
    return {
        "mean": pooled.mean(dim=0),
        "std": pooled.std(dim=0),
        "rhat": rank_normalized_rhat(x),
        "ess_bulk": ess_bulk(x),
        "ess_tail": ess_tail(x),
    }
