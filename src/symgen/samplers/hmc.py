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

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from symgen.densities import LogDensity, chain_sum
from symgen.samplers.adaptation import DualAveraging, MultiplicativeAdaptation, get_adaptation
from symgen.samplers.base import ChainState, Kernel, StepInfo, ValueAndGrad, per_chain
from symgen.samplers.mh import accept_test, select

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

        The random numbers are drawn first (:meth:`draw`), then :meth:`transition` runs the
        deterministic rest with ``torch.autograd.grad`` (``run_chain(compile=True)`` compiles it).
        """
        return self.step_with(state, log_prob, functools.partial(self.transition, self.gradient(log_prob)))

    def draw(self, state: ChainState) -> tuple[Tensor, Tensor, Tensor]:
        """``(step, p, u)``: per-chain (jittered) step sizes, standard normal momenta ``(B, *event)``
        and the MH uniforms ``(B,)``, in the order the eager kernel has always drawn them."""
        step = state.step_size
        if self.jitter > 0:
            step = step * (1.0 + self.jitter * (2.0 * self._rand(step.shape[0], step) - 1.0))
        p = self._randn(state.position)
        return step, p, self._rand(step.shape[0], step)

    def step_with(
        self, state: ChainState, log_prob: LogDensity, transition: Callable[..., tuple[Tensor, ...]]
    ) -> tuple[ChainState, StepInfo]:
        """:meth:`step` with a given (eager or compiled) :meth:`transition` bound to ``log_prob``."""
        state = self._evaluated(state, log_prob)
        step, p, u = self.draw(state)
        x, lp, grad, acceptance_prob, accepted, energy_error = transition(
            state.position, state.log_prob, state.grad, step, p, u
        )
        new_state = ChainState(x, lp, grad, state.step_size, state.iteration + 1)
        info = StepInfo(lp.detach(), step, acceptance_prob, accepted, energy_error=energy_error, grad=grad)
        return new_state, info

    def transition(
        self,
        value_and_grad: ValueAndGrad,
        x0: Tensor,
        lp0: Tensor,
        grad0: Tensor,
        step: Tensor,
        p: Tensor,
        u: Tensor,
    ) -> tuple[Tensor, ...]:
        r"""The deterministic part of a step: ``(x, log_prob, grad, acceptance_prob, accepted,
        energy_error)``.

        Leapfrog (Neal Sec. 5.2.3.3): :math:`p \leftarrow p + \tfrac\epsilon2 \nabla\log p(x)`,
        :math:`x \leftarrow x + \epsilon M^{-1} p`, :math:`p \leftarrow p + \tfrac\epsilon2
        \nabla\log p(x)` (inner half-steps merged) from momentum :math:`M^{1/2} p`; acceptance
        :math:`\min(1, e^{-\Delta H})` against the uniforms ``u``. A pure function of its tensors.
        """
        mass = self._mass_for(x0)
        eps = per_chain(step, x0)
        if mass is not None:
            p = p * mass.sqrt()
        h0 = -lp0 + self._kinetic(p, mass)

        x, lp, grad = x0, lp0, grad0
        p = p + 0.5 * eps * grad
        for i in range(self.n_leapfrog):
            x = x + eps * (p if mass is None else p / mass)
            lp, grad = value_and_grad(x)
            p = p + (eps if i < self.n_leapfrog - 1 else 0.5 * eps) * grad

        energy_error = torch.nan_to_num((-lp + self._kinetic(p, mass) - h0).detach(), nan=torch.inf)
        accepted, acceptance_prob = accept_test(-energy_error, u)
        x, lp, grad = select(accepted, (x, lp, grad), (x0, lp0, grad0))
        return x, lp, grad, acceptance_prob, accepted, energy_error
