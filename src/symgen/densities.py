r"""Unnormalized log-densities over batched tensors: the one contract every symgen sampler consumes.

A :data:`LogDensity` is any callable ``log_prob(x) -> (B,)`` taking a batch ``x`` of shape
``(B, *event)`` (chains first) and returning one unnormalized log-density per chain. Samplers take its
gradient with ``torch.autograd.grad(log_prob(x).sum(), x)``, so it must be differentiable in ``x`` and
must not mix chains (row ``b`` of the output may depend on row ``b`` of ``x`` only).

The builders here return the densities the papers sample from:

* :func:`posterior_log_prob` -- ``log p(z|x) = log p(z) + log p(x|z)`` with a Gaussian decoder and an
  optional pixel mask (Eq. (8) of the LFBM paper and its masked form in LFBM Sec. 4.3);
* :func:`ebm_log_prob` -- ``f(x) + log q(x)``, an EBM with a reference measure (Eq. (1) of the CoopFlow
  paper, Eq. (4) and (7) of the NT-EBM paper);
* :func:`tilted_latent_log_prob` -- ``log q0(z) + f(g(z))``, an exponential tilting of the prior pulled
  back through a generator (Eq. (9) of the NT-EBM paper; Eq. (4.8) and (4.19) of the dissertation);
* :func:`magnetized_log_prob` -- ``log p(z) - gamma * ||z - z*||`` (NT-EBM Sec. 4.2).

Sign convention: symgen always works with *log*-densities (negative energies). For an energy ``E``
with ``p ∝ exp(-E)`` (the dissertation's convention) pass ``lambda x: -E(x)``.

These few lines are hand-written: no maintained library offers batched, mask-aware posterior and
tilted-density builders with this contract (pyro/torch distributions need normalized densities).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "LogDensity",
    "standard_normal_log_prob",
    "gaussian_log_likelihood",
    "posterior_log_prob",
    "ebm_log_prob",
    "tilted_latent_log_prob",
    "magnetized_log_prob",
    "check_log_prob_output",
    "chain_sum",
]

LogDensity = Callable[[Tensor], Tensor]
"""``log_prob(x) -> (B,)`` for ``x`` of shape ``(B, *event)``; unnormalized is fine."""


def chain_sum(t: Tensor) -> Tensor:
    r"""The one per-chain reduction: :math:`\sum_j t_{b,j}` over all but the leading (chain) dimension.

    ``(B, *event) -> (B,)``. Used for every per-chain sum in symgen's densities and samplers (squared
    norms ``chain_sum(t * t)``, kinetic energies, Gaussian log-likelihoods), so that they all reduce in
    the same order.
    """
    return t.reshape(t.shape[0], -1).sum(dim=1)


def check_log_prob_output(value: Tensor, x: Tensor, name: str = "log_prob") -> Tensor:
    """Raise a ``ValueError`` unless ``value`` is a ``(B,)`` tensor for a batch ``x`` of ``B`` chains."""
    if not isinstance(value, Tensor) or value.shape != x.shape[:1]:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(
            f"{name}(x) must return a tensor of shape (B,) = ({x.shape[0]},) for x of shape "
            f"{tuple(x.shape)}; got {got}"
        )
    return value


def standard_normal_log_prob(z: Tensor) -> Tensor:
    r"""Normalized log-density of :math:`\mathcal N(0, I)` per chain: ``-||z||^2/2 - d/2 log(2 pi)``."""
    if z.dim() < 2:
        raise ValueError(f"z must have shape (B, *event) with at least 2 dims; got {tuple(z.shape)}")
    d = z[0].numel()
    return -0.5 * chain_sum(z * z) - 0.5 * d * math.log(2 * math.pi)


def gaussian_log_likelihood(
    x: Tensor,
    mean: Tensor,
    sigma: float | Tensor,
    mask: Tensor | None = None,
    constants: bool = False,
) -> Tensor:
    r"""Gaussian decoder log-likelihood ``log N(x; mean, sigma^2 I)`` over the observed entries, per chain.

    Computes :math:`-\|m \odot (x - \mu)\|^2 / (2\sigma^2)` (LFBM Sec. 3.2 below Eq. (7); masked form of
    LFBM Sec. 4.3), plus :math:`-\tfrac{n}{2}\log(2\pi\sigma^2)` with ``n`` the number of observed entries
    when ``constants=True``.

    Args:
        x: observations ``(B, *event)``.
        mean: decoder means, same shape as ``x``.
        sigma: positive scalar (or a tensor broadcastable to ``x``) observation standard deviation.
        mask: optional 0/1 (or weight) tensor broadcastable to ``x``; 1 marks observed entries.
        constants: include the normalizing constant.

    Returns:
        ``(B,)`` log-likelihoods.
    """
    if x.dim() < 2:
        raise ValueError(f"x must have shape (B, *event) with at least 2 dims; got {tuple(x.shape)}")
    if mean.shape != x.shape:
        raise ValueError(f"mean must have the shape of x {tuple(x.shape)}; got {tuple(mean.shape)}")
    if isinstance(sigma, (int, float)) and sigma <= 0:  # tensors are not checked: no device sync per call
        raise ValueError(f"sigma must be positive; got {sigma}")
    sigma_t = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    resid = (x - mean) / sigma_t
    if mask is not None:
        try:
            mask = torch.broadcast_to(mask.to(dtype=x.dtype, device=x.device), x.shape)
        except RuntimeError as err:
            raise ValueError(
                f"mask must be broadcastable to x of shape {tuple(x.shape)} (e.g. (B, *event) or "
                f"(*event)); got {tuple(mask.shape)}"
            ) from err
        resid = resid * mask
    out = -0.5 * chain_sum(resid * resid)
    if constants:
        log_norm = torch.log(2 * math.pi * torch.broadcast_to(sigma_t, x.shape) ** 2)
        weights = mask if mask is not None else torch.ones_like(x)
        out = out - 0.5 * chain_sum(weights * log_norm)
    return out


def posterior_log_prob(
    prior_log_prob: LogDensity,
    generator: Callable[[Tensor], Tensor],
    x: Tensor,
    sigma: float | Tensor,
    mask: Tensor | None = None,
) -> LogDensity:
    r"""Latent posterior ``z -> log p(z) + log p(x | z)`` with a Gaussian decoder ``x ~ N(g(z), sigma^2 I)``.

    This is the target of the Langevin inference in Eq. (8) of the LFBM paper; its gradient is
    :math:`\nabla_z l_\alpha(z) + \sigma^{-2}(x - g(z))\nabla_z g(z)`. With ``mask`` only observed pixels
    enter the likelihood (LFBM Sec. 4.3, inpainting and learning from incomplete data).

    Args:
        prior_log_prob: ``log p(z)``, ``(B, *latent) -> (B,)`` (a flow prior, ``standard_normal_log_prob``).
        generator: ``g(z)``, ``(B, *latent) -> (B, *event)``.
        x: observed batch ``(B, *event)``, one observation per chain.
        sigma: decoder standard deviation.
        mask: optional observation mask broadcastable to ``x``.
    """
    if not callable(prior_log_prob) or not callable(generator):
        raise ValueError("prior_log_prob and generator must be callables taking a (B, *latent) tensor")
    x = x.detach()

    def log_prob(z: Tensor) -> Tensor:
        if z.shape[0] != x.shape[0]:
            raise ValueError(f"z has {z.shape[0]} chains but x has {x.shape[0]} observations")
        return prior_log_prob(z) + gaussian_log_likelihood(x, generator(z), sigma, mask)

    return log_prob


def ebm_log_prob(
    neg_energy: Callable[[Tensor], Tensor],
    reference_log_prob: LogDensity | None = None,
) -> LogDensity:
    r"""Data-space EBM ``x -> f(x) + log q(x)`` (unnormalized).

    ``f`` is the negative energy (CoopFlow Eq. (1): :math:`p_\theta(x) \propto \exp f_\theta(x)`); the
    optional reference measure ``q`` turns it into NT-EBM Eq. (4) (Gaussian/uniform ``q``) or Eq. (7)
    (a flow backbone ``q_alpha``). ``f`` may return ``(B,)`` or ``(B, 1)``.
    """
    if not callable(neg_energy):
        raise ValueError("neg_energy must be a callable x -> (B,)")

    def log_prob(x: Tensor) -> Tensor:
        out = neg_energy(x).reshape(x.shape[0])
        if reference_log_prob is not None:
            out = out + reference_log_prob(x)
        return out

    return log_prob


def tilted_latent_log_prob(
    neg_energy: Callable[[Tensor], Tensor],
    generator: Callable[[Tensor], Tensor | tuple[Tensor, Tensor]],
    prior_log_prob: LogDensity | None = None,
) -> LogDensity:
    r"""Exponentially tilted latent density ``z -> log q0(z) + f(g(z))``.

    NT-EBM Eq. (9): for :math:`p_\theta(x) \propto e^{f_\theta(x)} q_\alpha(x)` with a flow
    :math:`x = g_\alpha(z)`, the latent density is :math:`p(z) \propto q_0(z) e^{f_\theta(g_\alpha(z))}` --
    no Jacobian, no inverse. Dissertation Eq. (4.8) (flow) and Eq. (4.19) (VAEBM's ``(eps_x, eps_z)``
    space, where ``g`` maps the noise to ``x``) have the same form with ``f = -E``.

    Args:
        neg_energy: ``f``, ``(B, *event) -> (B,)``.
        generator: ``g``, ``(B, *latent) -> (B, *event)``; a ``(x, ladj)`` tuple output is accepted
            (the log-determinant is ignored, as Eq. (9) needs none).
        prior_log_prob: ``log q0``; defaults to the standard normal.
    """
    if not callable(neg_energy) or not callable(generator):
        raise ValueError("neg_energy and generator must be callables")
    prior = standard_normal_log_prob if prior_log_prob is None else prior_log_prob

    def log_prob(z: Tensor) -> Tensor:
        x = generator(z)
        if isinstance(x, tuple):
            x = x[0]
        return prior(z) + neg_energy(x).reshape(z.shape[0])

    return log_prob


def magnetized_log_prob(log_prob: LogDensity, target: Tensor, gamma: float) -> LogDensity:
    r"""Magnetized density ``z -> log p(z) - gamma * ||z - z*||_2`` (NT-EBM Sec. 4.2, after Hill et al.).

    The extra term's gradient :math:`-\gamma (z - z^*)/\|z - z^*\|` is a field of constant strength
    ``gamma`` pointing at ``target``, so Langevin dynamics drifts along a low-energy path to ``z*``.
    (NT-EBM writes the drift with a ``+`` sign; the field points *towards* ``z*`` only with ``-``, which
    is what the potential :math:`U_\gamma = U - \gamma\|z - z^*\|` they define gives.)

    Args:
        log_prob: the density to magnetize.
        target: ``z*``, shape ``(*event)`` (shared) or ``(B, *event)`` (one per chain).
        gamma: magnetization strength, ``>= 0``.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0; got {gamma}")
    target = target.detach()

    def magnetized(z: Tensor) -> Tensor:
        if target.shape != z.shape and target.shape != z.shape[1:]:
            raise ValueError(
                f"target must have shape (*event) {tuple(z.shape[1:])} or (B, *event) {tuple(z.shape)}; "
                f"got {tuple(target.shape)}"
            )
        diff = (z - target).reshape(z.shape[0], -1)
        return log_prob(z) - gamma * torch.linalg.vector_norm(diff, dim=1)

    return magnetized
