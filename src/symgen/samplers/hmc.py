r"""Batched Hamiltonian Monte Carlo with per-chain step sizes and a diagonal mass matrix.

Each step draws a momentum :math:`p \sim \mathcal N(0, M)`, runs ``n_leapfrog`` leapfrog steps of the
Hamiltonian :math:`H(x, p) = -\log p(x) + \tfrac12 p^\top M^{-1} p` (Neal, 2011, "MCMC using
Hamiltonian dynamics", leapfrog of Sec. 5.2.3.3) and accepts each chain's endpoint with probability
:math:`\min(1, e^{-\Delta H})` (Neal Sec. 5.3.2.1) by the shared
:func:`~symgen.samplers.mh.metropolis_hastings`. This is the sampler of NT-EBM Algorithm 1 / appendix
A.4 (persistent chains, 3 leapfrog steps, initial step 0.15, multiplicative adaptation toward 0.651).

Chains are the leading dimension and never interact: a divergent chain (NaN or huge energy error) is
rejected alone. The optional ``jitter`` draws each chain's step size uniformly in
``[(1-jitter) eps, (1+jitter) eps]`` every step to break periodic trajectories (Neal, Sec. 5.4.2.2).

Hand-written: pyro/numpyro HMC run one chain per process (pyro #2902); here all chains advance in
one batched tensor program.
"""

from __future__ import annotations

import torch
from torch import Tensor

from symgen.densities import LogDensity, chain_sum
from symgen.samplers.adaptation import DualAveraging, MultiplicativeAdaptation, get_adaptation
from symgen.samplers.base import ChainState, Kernel, StepInfo, chain_norm, per_chain, value_and_grad
from symgen.samplers.mh import metropolis_hastings

__all__ = ["HMC"]


class HMC(Kernel):
    """Hamiltonian Monte Carlo with leapfrog integration and a per-chain Metropolis-Hastings test.

    Args:
        step_size: leapfrog step size, a float or per-chain ``(B,)`` tensor.
        n_leapfrog: leapfrog steps per HMC step (``L``).
        mass: diagonal of the mass matrix, positive, shape ``(*event)`` or ``(B, *event)``; ``None`` = I.
        adaptation: ``"multiplicative"`` (NT-EBM, default), ``"dual_averaging"``, an adapter, or ``None``;
            used by ``run_chain(adapt_steps=...)`` during warm-up only.
        target_accept: target acceptance probability of a named ``adaptation`` (default 0.651, NT-EBM);
            an error with an adapter object or ``None`` (which would ignore it).
        jitter: relative uniform jitter of the step size in ``[0, 1)``.
        differentiable: keep the autograd graph through the chain.
        generator: optional ``torch.Generator``.
    """

    def __init__(
        self,
        step_size: float | Tensor = 0.1,
        n_leapfrog: int = 10,
        mass: Tensor | None = None,
        adaptation: str | MultiplicativeAdaptation | DualAveraging | None = "multiplicative",
        target_accept: float | None = None,
        jitter: float = 0.0,
        differentiable: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        adapter = get_adaptation(adaptation, target_accept, default_target=0.651, owner="HMC")
        super().__init__(step_size, differentiable, generator, adapter)
        if not isinstance(n_leapfrog, int) or n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be a positive int; got {n_leapfrog!r}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1); got {jitter}")
        if mass is not None and not bool((mass > 0).all()):
            raise ValueError("mass must be a tensor of positive diagonal entries")
        self.n_leapfrog = n_leapfrog
        self.mass = None if mass is None else mass.detach()
        self.jitter = float(jitter)

    def _mass_for(self, x: Tensor) -> Tensor | None:
        if self.mass is None:
            return None
        if self.mass.shape not in (x.shape, x.shape[1:]):
            raise ValueError(
                f"mass must have shape (*event) {tuple(x.shape[1:])} or (B, *event) {tuple(x.shape)}; "
                f"got {tuple(self.mass.shape)}"
            )
        return self.mass.to(device=x.device, dtype=x.dtype)

    def _kinetic(self, p: Tensor, mass: Tensor | None) -> Tensor:
        r"""Kinetic energy :math:`\tfrac12 p^\top M^{-1} p` per chain (Neal Sec. 5.2.1, diagonal M)."""
        return 0.5 * chain_sum(p * p if mass is None else p * p / mass)

    def step(self, state: ChainState, log_prob: LogDensity) -> tuple[ChainState, StepInfo]:
        r"""One HMC transition: momentum draw, ``n_leapfrog`` leapfrog steps, per-chain MH test.

        Leapfrog (Neal Sec. 5.2.3.3): :math:`p \leftarrow p + \tfrac\epsilon2 \nabla\log p(x)`,
        :math:`x \leftarrow x + \epsilon M^{-1} p`, :math:`p \leftarrow p + \tfrac\epsilon2
        \nabla\log p(x)` (inner half-steps merged); acceptance :math:`\min(1, e^{-\Delta H})`.
        """
        state = self._evaluated(state, log_prob)
        x0 = state.position
        mass = self._mass_for(x0)
        step = state.step_size
        if self.jitter > 0:
            step = step * (1.0 + self.jitter * (2.0 * self._rand(step.shape[0], step) - 1.0))
        eps = per_chain(step, x0)
        p = self._randn(x0)
        if mass is not None:
            p = p * mass.sqrt()
        h0 = -state.log_prob + self._kinetic(p, mass)

        x, lp, grad = x0, state.log_prob, state.grad
        p = p + 0.5 * eps * grad
        for i in range(self.n_leapfrog):
            x = x + eps * (p if mass is None else p / mass)
            lp, grad = value_and_grad(log_prob, x, self.differentiable)
            p = p + (eps if i < self.n_leapfrog - 1 else 0.5 * eps) * grad

        energy_error = torch.nan_to_num((-lp + self._kinetic(p, mass) - h0).detach(), nan=torch.inf)
        proposal = ChainState(x, lp, grad, state.step_size, state.iteration + 1)
        new_state, acceptance_prob, accepted = metropolis_hastings(
            state, proposal, -energy_error, self.generator
        )
        info = StepInfo(
            log_prob=new_state.log_prob.detach(),
            step_size=step,
            acceptance_prob=acceptance_prob,
            accepted=accepted,
            grad_norm=chain_norm(new_state.grad.detach()),
            energy_error=energy_error,
        )
        return new_state, info
