r"""Langevin-family kernels: unadjusted Langevin, MALA, magnetized Langevin, gradient ascent.

One convention for every paper (see ``docs/samplers.md``):

.. math:: x \leftarrow x + \tfrac{s^2}{2}\,\nabla_x \log p(x) + s \cdot \text{noise\_scale}\cdot\epsilon,
   \qquad \epsilon \sim \mathcal N(0, I),

with ``s = step_size``. This is CoopFlow Eq. (3) (``delta = s``) and, with :math:`\xi = s^2/2`, LFBM
Eq. (8) (:math:`z + \xi\nabla\log p + \sqrt{2\xi}\epsilon`); the dissertation's Eq. (5.3)
(:math:`x - \tfrac\eta2\nabla E + \sqrt\eta\,\omega`) is :math:`\eta = s^2`.

Options (per step, in this order): the gradient is clipped element-wise to ``[-grad_clip, grad_clip]``
(VAEBM / Du & Mordatch); the drift :math:`\tfrac{s^2}{2}\nabla\log p` is clipped element-wise to
``[-drift_clip, drift_clip]`` (CoopFlow's official code clamps this update at 0.1); noise is added
with the multiplier ``noise_scale * schedule(iteration)``; the state is clamped to ``clamp=(lo, hi)``
(CoopFlow code: ``(-1, 1)``).

Noise schedules: ``"constant"``; ``"off"`` (CoopFlow main text, following Zhao et al.); ``"decayed"``
(CoopFlow appendix A.11 Eq. (10), :math:`\max(1 - k/K, 0)^{20}`; CoopFlow applies it over training
*epochs* -- use :class:`DecayedNoise` to compute the multiplier and pass it as ``noise_scale``); and
``"annealed"`` (linear decay from 1 to 0 over ``schedule_horizon`` steps of one chain).

Hand-written: no maintained PyTorch library offers batched, per-chain-step-size Langevin/MALA with
these clipping conventions and an autograd-graph-keeping mode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from symgen.densities import LogDensity, chain_sum, magnetized_log_prob
from symgen.samplers.adaptation import DualAveraging, MultiplicativeAdaptation, get_adaptation
from symgen.samplers.base import (
    ChainState,
    Kernel,
    StepInfo,
    StepSizeAdapter,
    ValueAndGrad,
    per_chain,
)
from symgen.samplers.mh import accept_test, select

__all__ = [
    "NoiseSchedule",
    "DecayedNoise",
    "AnnealedNoise",
    "get_noise_schedule",
    "Langevin",
    "MALA",
    "MagnetizedLangevin",
    "GradientDescent",
]

NoiseSchedule = Callable[[int], float]
"""Maps the chain iteration ``k`` (0-based) to a noise multiplier."""


def _constant(k: int) -> float:
    return 1.0


def _off(k: int) -> float:
    return 0.0


@dataclass(frozen=True)
class DecayedNoise:
    r"""CoopFlow appendix A.11 Eq. (10): :math:`\max(1 - k/K, 0)^{\text{power}}` with ``K = horizon``.

    (The paper writes :math:`\max((1 - k/K)^{20}, 0)`, which grows again after ``K`` for an even power;
    the base is clipped at zero here so the noise stays off.)
    """

    horizon: float
    power: float = 20.0

    def __call__(self, k: int) -> float:
        return max(1.0 - k / self.horizon, 0.0) ** self.power


@dataclass(frozen=True)
class AnnealedNoise:
    """Linear annealing of the noise multiplier from ``start`` to ``end`` over ``horizon`` steps."""

    horizon: int
    start: float = 1.0
    end: float = 0.0

    def __call__(self, k: int) -> float:
        frac = min(k / max(self.horizon - 1, 1), 1.0)
        return self.start + (self.end - self.start) * frac


def get_noise_schedule(schedule: str | NoiseSchedule, horizon: float | None = None) -> NoiseSchedule:
    """Resolve ``"constant"``, ``"off"``, ``"decayed"``/``"annealed"`` (needs ``horizon``) or a callable."""
    if callable(schedule):
        return schedule
    if schedule == "constant":
        return _constant
    if schedule == "off":
        return _off
    if schedule in ("decayed", "annealed"):
        if horizon is None or not horizon > 0:
            raise ValueError(f"noise_schedule='{schedule}' needs a positive schedule_horizon; got {horizon}")
        return DecayedNoise(horizon) if schedule == "decayed" else AnnealedNoise(int(horizon))
    raise ValueError(
        "noise_schedule must be 'constant', 'off', 'decayed', 'annealed' or a callable k -> float; "
        f"got {schedule!r}"
    )


def _check_clamp(clamp: tuple[float, float] | None) -> tuple[float, float] | None:
    if clamp is None:
        return None
    if len(clamp) != 2 or not clamp[0] < clamp[1]:
        raise ValueError(f"clamp must be a (lo, hi) pair with lo < hi; got {clamp!r}")
    return (float(clamp[0]), float(clamp[1]))


def _check_positive_or_none(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be positive or None; got {value}")


class _GradientDrift(Kernel):
    r"""What :class:`Langevin` and :class:`MALA` share: the per-chain coefficients and the clipped drift.

    Drift :math:`d(x) = \operatorname{clip}_{\text{drift}}(\tfrac{s^2}{2}\operatorname{clip}_{\text{grad}}
    (\nabla\log p(x)))`, each clip element-wise and optional.
    """

    def __init__(
        self,
        step_size: float | Tensor,
        grad_clip: float | None,
        drift_clip: float | None,
        differentiable: bool,
        generator: torch.Generator | None,
        adaptation: StepSizeAdapter | None,
    ) -> None:
        super().__init__(step_size, differentiable, generator, adaptation)
        _check_positive_or_none("grad_clip", grad_clip)
        _check_positive_or_none("drift_clip", drift_clip)
        self.grad_clip = grad_clip
        self.drift_clip = drift_clip
        self._coef: tuple[Tensor, Tensor, Tensor] | None = None

    def coefficients(self, step_size: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(s, s^2/2)`` as ``(B, 1, ...)`` tensors broadcasting over ``x``.

        Cached while the same step-size tensor object is passed (step sizes are never modified in place:
        adaptation replaces the tensor), which saves small per-step tensor ops.
        """
        coef = self._coef
        if coef is None or coef[0] is not step_size or coef[1].dim() != x.dim():
            s = per_chain(step_size, x)
            coef = self._coef = (step_size, s, 0.5 * s * s)
        return coef[1], coef[2]

    def drift(self, grad: Tensor, half_s2: Tensor) -> Tensor:
        """The (clipped) drift ``s^2/2 * clip(grad)`` for ``half_s2 = s^2/2`` of shape ``(B, 1, ...)``."""
        if self.grad_clip is not None:
            grad = grad.clamp(-self.grad_clip, self.grad_clip)
        d = half_s2 * grad
        if self.drift_clip is not None:
            d = d.clamp(-self.drift_clip, self.drift_clip)
        return d


class Langevin(_GradientDrift):
    r"""Unadjusted Langevin dynamics ``x + s^2/2 grad log p + s * noise_scale * eps`` (LFBM Eq. (8)).

    One step is :math:`x_{k+1} = \operatorname{clamp}(x_k + d(x_k) + s\,\nu(k)\,\epsilon_k)` with the drift
    :math:`d = \tfrac{s^2}{2}\nabla\log p` (clipped as configured),
    :math:`\nu(k) = \text{noise\_scale}\cdot\text{schedule}(k)` and
    :math:`\epsilon_k \sim \mathcal N(0, I)`; the unclipped drift is applied as the fused
    ``torch.addcmul(x, s^2/2, grad)``. It needs the gradient at :math:`x_k` only, so :meth:`move` leaves
    :math:`x_{k+1}` unevaluated and ``run_chain`` costs ``K`` gradient evaluations for ``K`` steps.

    Args:
        step_size: ``s``, a float or per-chain ``(B,)`` tensor (LFBM's :math:`\xi = s^2/2`).
        noise_scale: constant multiplier of the noise (1 = correct Langevin; 0 = gradient ascent;
            the dissertation's short-run EBMs use a reduced scale).
        grad_clip: element-wise clip of the gradient, or ``None``.
        drift_clip: element-wise clip of the drift ``s^2/2 grad``, or ``None`` (CoopFlow code: 0.1).
        clamp: ``(lo, hi)`` clamp of the state after each step, or ``None`` (CoopFlow code: (-1, 1)).
        noise_schedule: ``"constant" | "off" | "decayed" | "annealed"`` or ``k -> multiplier``.
        schedule_horizon: ``K`` of the decayed/annealed schedules (in chain steps).
        differentiable: keep the autograd graph through the chain.
        generator: optional ``torch.Generator``.
    """

    def __init__(
        self,
        step_size: float | Tensor = 0.1,
        noise_scale: float = 1.0,
        grad_clip: float | None = None,
        drift_clip: float | None = None,
        clamp: tuple[float, float] | None = None,
        noise_schedule: str | NoiseSchedule = "constant",
        schedule_horizon: float | None = None,
        differentiable: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(step_size, grad_clip, drift_clip, differentiable, generator, adaptation=None)
        if not noise_scale >= 0:
            raise ValueError(f"noise_scale must be >= 0; got {noise_scale}")
        self.noise_scale = float(noise_scale)
        self.clamp = _check_clamp(clamp)
        self.noise_schedule = get_noise_schedule(noise_schedule, schedule_horizon)
        self._consts: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}

    def _constants(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Cached ``(ones, True, NaN)`` ``(B,)`` tensors for the infos (every step is accepted)."""
        key = (like.shape[0], like.device, like.dtype)
        if key not in self._consts:
            n = like.shape[0]
            ones = torch.ones(n, device=like.device, dtype=like.dtype)
            true = torch.ones(n, dtype=torch.bool, device=like.device)
            self._consts[key] = (ones, true, torch.full_like(ones, float("nan")))
        return self._consts[key]

    def _target(self, log_prob: LogDensity) -> LogDensity:
        """The density the chain runs on (:class:`MagnetizedLangevin` magnetizes it)."""
        return log_prob

    def init(self, x0: Tensor, log_prob: LogDensity, step_size: float | Tensor | None = None) -> ChainState:
        return super().init(x0, self._target(log_prob), step_size)

    def noise(self, state: ChainState, s: Tensor) -> Tensor | None:
        r"""The scaled noise :math:`s\,\nu(k)\,\epsilon_k` of this step (``None`` when :math:`\nu(k) = 0`)."""
        scale = self.noise_scale * self.noise_schedule(state.iteration)
        if scale == 0.0:
            return None
        noise = self._randn(state.position).mul_(s)
        return noise if scale == 1.0 else noise.mul_(scale)

    def update(self, x: Tensor, grad: Tensor, half_s2: Tensor, noise: Tensor | None) -> Tensor:
        r"""The new positions :math:`\operatorname{clamp}(x + d(x) + \text{noise})` (a pure function)."""
        if self.grad_clip is None and self.drift_clip is None:
            new = torch.addcmul(x, half_s2, grad)
        else:
            new = x + self.drift(grad, half_s2)
        if noise is not None:
            new = new + noise
        if self.clamp is not None:
            new = new.clamp(*self.clamp)
        return new

    def transition(
        self, value_and_grad: ValueAndGrad, x: Tensor, grad: Tensor, half_s2: Tensor, noise: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_new, log_prob, grad)``: :meth:`update`, then the target and its gradient at ``x_new``."""
        new = self.update(x, grad, half_s2, noise)
        lp, grad = value_and_grad(new)
        return new, lp, grad

    def step(self, state: ChainState, log_prob: LogDensity) -> tuple[ChainState, StepInfo]:
        """One Langevin step, then ``log_prob`` and its gradient at the new positions."""
        target = self._target(log_prob)
        return self.step_with(state, log_prob, functools.partial(self.transition, self.gradient(target)))

    def step_with(
        self, state: ChainState, log_prob: LogDensity, transition: Callable[..., tuple[Tensor, ...]]
    ) -> tuple[ChainState, StepInfo]:
        """:meth:`step` with a given (eager or compiled) :meth:`transition` bound to the target."""
        state = self._evaluated(state, self._target(log_prob))
        s, half_s2 = self.coefficients(state.step_size, state.position)
        noise = self.noise(state, s)
        new, lp, grad = transition(state.position, state.grad, half_s2, noise)
        ones, true, _ = self._constants(new)
        new_state = ChainState(new, lp, grad, state.step_size, state.iteration + 1)
        return new_state, StepInfo(lp.detach(), state.step_size, ones, true, grad=grad)

    def move(self, state: ChainState, log_prob: LogDensity) -> tuple[ChainState, StepInfo]:
        """One Langevin step without evaluating the new positions (``log_prob``/``grad`` ``None``,
        NaN ``info.log_prob``/``info.grad_norm``); the next step evaluates them if it needs them."""
        state = self._evaluated(state, self._target(log_prob))
        s, half_s2 = self.coefficients(state.step_size, state.position)
        new = self.update(state.position, state.grad, half_s2, self.noise(state, s))
        ones, true, nan = self._constants(new)
        new_state = ChainState(new, None, None, state.step_size, state.iteration + 1)
        return new_state, StepInfo(nan, state.step_size, ones, true, nan)


class GradientDescent(Langevin):
    r"""Noise-free Langevin: gradient *ascent* on ``log p``, ``x + s^2/2 grad log p``.

    The noise-free dynamics of dissertation Ch. 5, Eq. (5.8) (:math:`x - \tfrac\eta2\nabla E`,
    :math:`\eta = s^2`), and of CoopFlow's main-text sampler (noise removed).
    """

    def __init__(
        self,
        step_size: float | Tensor = 0.1,
        grad_clip: float | None = None,
        drift_clip: float | None = None,
        clamp: tuple[float, float] | None = None,
        differentiable: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            step_size,
            noise_scale=0.0,
            grad_clip=grad_clip,
            drift_clip=drift_clip,
            clamp=clamp,
            noise_schedule="off",
            differentiable=differentiable,
            generator=generator,
        )


class MagnetizedLangevin(Langevin):
    r"""Langevin on ``log p(z) - gamma ||z - z*||`` (NT-EBM Sec. 4.2): a low-energy path toward ``target``.

    Args:
        target: ``z*``, ``(*event)`` or ``(B, *event)``.
        gamma: magnetization strength.
        step_size, noise_scale, grad_clip, drift_clip, clamp, noise_schedule, schedule_horizon,
            differentiable, generator: as in :class:`Langevin`.
    """

    def __init__(
        self,
        target: Tensor,
        gamma: float,
        step_size: float | Tensor = 0.1,
        noise_scale: float = 1.0,
        grad_clip: float | None = None,
        drift_clip: float | None = None,
        clamp: tuple[float, float] | None = None,
        noise_schedule: str | NoiseSchedule = "constant",
        schedule_horizon: float | None = None,
        differentiable: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            step_size,
            noise_scale=noise_scale,
            grad_clip=grad_clip,
            drift_clip=drift_clip,
            clamp=clamp,
            noise_schedule=noise_schedule,
            schedule_horizon=schedule_horizon,
            differentiable=differentiable,
            generator=generator,
        )
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0; got {gamma}")
        self.target = target.detach()
        self.gamma = float(gamma)

    def _target(self, log_prob: LogDensity) -> LogDensity:
        return magnetized_log_prob(log_prob, self.target, self.gamma)


class MALA(_GradientDrift):
    r"""Metropolis-adjusted Langevin: the :class:`Langevin` proposal plus a per-chain MH accept/reject.

    Proposal :math:`x' = x + d(x) + s\epsilon` with drift :math:`d = \tfrac{s^2}{2}\nabla\log p` (clipped
    as configured -- the MH ratio uses the same drift both ways, so clipping keeps the target exact);
    acceptance :math:`\min(1, \tfrac{p(x')\,q(x|x')}{p(x)\,q(x'|x)})` with
    :math:`q(x'|x) = \mathcal N(x + d(x), s^2 I)` (Roberts & Tweedie, 1996), by the shared
    :func:`~symgen.samplers.mh.metropolis_hastings`. The noise is always the correct one and the state
    is never clamped (either would break detailed balance), so MALA takes none of :class:`Langevin`'s
    noise or clamp options.

    Args:
        step_size: ``s`` (float or ``(B,)``).
        grad_clip, drift_clip: as in :class:`Langevin`.
        adaptation: ``"dual_averaging"`` (default), ``"multiplicative"``, an adapter or ``None``;
            used by ``run_chain(adapt_steps=...)``.
        target_accept: target acceptance probability of a named ``adaptation`` (default 0.574, Roberts &
            Rosenthal 1998); an error with an adapter object or ``None`` (which would ignore it).
        differentiable: keep the autograd graph through the chain.
        generator: optional ``torch.Generator``.
    """

    def __init__(
        self,
        step_size: float | Tensor = 0.1,
        grad_clip: float | None = None,
        drift_clip: float | None = None,
        adaptation: str | MultiplicativeAdaptation | DualAveraging | None = "dual_averaging",
        target_accept: float | None = None,
        differentiable: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        adapter = get_adaptation(adaptation, target_accept, default_target=0.574, owner="MALA")
        super().__init__(step_size, grad_clip, drift_clip, differentiable, generator, adapter)

    def step(self, state: ChainState, log_prob: LogDensity) -> tuple[ChainState, StepInfo]:
        """Propose, then accept with the MH probability (class docstring); :meth:`transition` eager."""
        return self.step_with(state, log_prob, functools.partial(self.transition, self.gradient(log_prob)))

    def step_with(
        self, state: ChainState, log_prob: LogDensity, transition: Callable[..., tuple[Tensor, ...]]
    ) -> tuple[ChainState, StepInfo]:
        """:meth:`step` with a given (eager or compiled) :meth:`transition` bound to ``log_prob``."""
        state = self._evaluated(state, log_prob)
        x, step = state.position, state.step_size
        s, half_s2 = self.coefficients(step, x)
        eps = self._randn(x)
        u = self._rand(x.shape[0], x)
        x, lp, grad, acceptance_prob, accepted = transition(x, state.log_prob, state.grad, s, half_s2, eps, u)
        new_state = ChainState(x, lp, grad, step, state.iteration + 1)
        return new_state, StepInfo(lp.detach(), step, acceptance_prob, accepted, grad=grad)

    def transition(
        self,
        value_and_grad: ValueAndGrad,
        x: Tensor,
        lp: Tensor,
        grad: Tensor,
        s: Tensor,
        half_s2: Tensor,
        eps: Tensor,
        u: Tensor,
    ) -> tuple[Tensor, ...]:
        r"""``(x, log_prob, grad, acceptance_prob, accepted)`` after proposing
        :math:`x' = x + d(x) + s\epsilon` and testing it against the uniforms ``u`` (a pure function).

        With :math:`x' - x - d(x) = s\epsilon`,
        :math:`\log q(x|x') - \log q(x'|x) = -\tfrac12(\|(x - x' - d(x'))/s\|^2 - \|\epsilon\|^2)`.
        """
        proposal = x + self.drift(grad, half_s2) + s * eps
        lp_new, grad_new = value_and_grad(proposal)
        back = (x - proposal - self.drift(grad_new, half_s2)) / s
        log_q_ratio = -0.5 * (chain_sum(back * back) - chain_sum(eps * eps))
        accepted, acceptance_prob = accept_test(lp_new - lp + log_q_ratio, u)
        x, lp, grad = select(accepted, (proposal, lp_new, grad_new), (x, lp, grad))
        return x, lp, grad, acceptance_prob, accepted
