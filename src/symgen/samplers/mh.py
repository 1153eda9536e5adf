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

__all__ = ["metropolis_hastings"]


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
    log_alpha = torch.nan_to_num(log_ratio.detach(), nan=-torch.inf)
    u = torch.rand(log_alpha.shape[0], generator=generator, device=log_alpha.device, dtype=log_alpha.dtype)
    accepted = torch.log(u) < log_alpha
    keep = per_chain(accepted, current.position)
    state = ChainState(
        position=torch.where(keep, proposal.position, current.position),
        log_prob=torch.where(accepted, proposal.log_prob, current.log_prob),
        grad=torch.where(keep, proposal.grad, current.grad),
        step_size=proposal.step_size,
        iteration=proposal.iteration,
    )
    return state, torch.exp(log_alpha.clamp(max=0.0)), accepted
