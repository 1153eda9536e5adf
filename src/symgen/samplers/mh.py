r"""The one Metropolis-Hastings accept step, shared by every adjusted kernel (MALA, HMC).

Given a current state :math:`x` and a proposal :math:`x'` drawn from :math:`q(x'|x)`, each chain accepts
the proposal with probability (Metropolis et al., 1953; Hastings, 1970)

.. math:: \alpha(x, x') = \min\Bigl(1, \frac{p(x')\,q(x|x')}{p(x)\,q(x'|x)}\Bigr)
   = \min\bigl(1, e^{\log r}\bigr),

where the kernel supplies :math:`\log r` per chain: MALA's
:math:`\log p(x') - \log p(x) + \log q(x|x') - \log q(x'|x)` (Roberts & Tweedie, 1996), HMC's
:math:`-\Delta H = H(x, p) - H(x', p')` (Neal, 2011, Sec. 5.3.2.1; the leapfrog map is volume
preserving and reversible, so the proposal ratio is 1). The test draws :math:`u \sim U(0, 1)` per chain
and accepts when :math:`\log u < \log r`; a NaN ratio (a diverged proposal) counts as :math:`-\infty`
and is rejected, for that chain alone.

Chains are the leading dimension and never interact: the accepted position, log-density and gradient
are selected per chain with ``torch.where`` (no host synchronisation).
"""

from __future__ import annotations

import torch
from torch import Tensor

from symgen.samplers.base import ChainState, per_chain

__all__ = ["metropolis_hastings", "accept_test", "select"]


def accept_test(log_ratio: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    r"""Per-chain decisions :math:`\log u < \log r` (NaN ratios rejected) and :math:`\min(1, e^{\log r})`.

    The tensor-level core of :func:`metropolis_hastings` for given uniforms ``u`` ``(B,)``; a pure
    function, so kernels' compiled transitions (:mod:`symgen.samplers.compiled`) use it too.
    """
    log_alpha = torch.nan_to_num(log_ratio.detach(), nan=-torch.inf)
    return torch.log(u) < log_alpha, torch.exp(log_alpha.clamp(max=0.0))


def select(accepted: Tensor, proposal: tuple[Tensor, ...], current: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Each tensor of ``proposal`` where a chain accepted, of ``current`` elsewhere (``torch.where``)."""
    return tuple(torch.where(per_chain(accepted, a), a, b) for a, b in zip(proposal, current, strict=True))


def metropolis_hastings(
    current: ChainState,
    proposal: ChainState,
    log_ratio: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[ChainState, Tensor, Tensor]:
    r"""Accept each chain's proposal with probability :math:`\min(1, e^{\log r})` (module docstring).

    Args:
        current: the chains' current state (evaluated: ``log_prob`` and ``grad`` set).
        proposal: the proposed state (evaluated); its ``step_size`` and ``iteration`` are those of the
            returned state.
        log_ratio: ``(B,)`` log acceptance ratio :math:`\log r`; NaN entries are rejected.
        generator: the kernel's ``torch.Generator`` (one uniform draw per chain), or ``None`` for the
            global RNG.

    Returns:
        ``(state, acceptance_prob, accepted)``: the proposal where accepted and ``current`` elsewhere;
        :math:`\min(1, e^{\log r})` and the accept decisions, both ``(B,)`` and detached.
    """
    u = torch.rand(log_ratio.shape[0], generator=generator, device=log_ratio.device, dtype=log_ratio.dtype)
    accepted, acceptance_prob = accept_test(log_ratio, u)
    position, log_prob, grad = select(
        accepted,
        (proposal.position, proposal.log_prob, proposal.grad),
        (current.position, current.log_prob, current.grad),
    )
    state = ChainState(position, log_prob, grad, proposal.step_size, proposal.iteration)
    return state, acceptance_prob, accepted
