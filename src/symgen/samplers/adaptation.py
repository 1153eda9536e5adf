r"""Step-size adaptation toward a target Metropolis-Hastings acceptance rate, for batched chains.

Two functional adapters (``init`` / ``update`` / ``current`` / ``final``) that ``run_chain`` drives during
warm-up (``adapt_steps``) only, so the chain is a valid Markov chain afterwards:

* :class:`MultiplicativeAdaptation` -- the simple policy of NT-EBM appendix A.4 (after Andrieu & Thoms,
  2008; the TFP ``SimpleStepSizeAdaptation`` the NT-EBM code used): multiply the step size by
  ``1 + rate`` when the acceptance probability is above target, divide otherwise. Target 0.651
  (Beskos et al., 2013), the HMC optimum NT-EBM uses.
* :class:`DualAveraging` -- Nesterov dual averaging of Hoffman & Gelman (2014), "The No-U-Turn
  Sampler", Algorithm 5 / Sec. 3.2.1, returning the averaged step size at the end of warm-up.

Adapter states are plain dicts of tensors and ints (:class:`MultiplicativeState`,
:class:`DualAveragingState` are ``TypedDict`` views of them), so a trainer can checkpoint them and
``torch.load(weights_only=True)`` reads them back; ``run_chain(adaptation_state=...)`` continues one.

With ``per_chain=False`` (default) the statistic is the acceptance probability averaged over chains
and all chains share one step size; with ``per_chain=True`` every chain adapts its own (noisier:
the multiplicative rule then settles where the *median* acceptance equals the target).

Hand-written: pyro/numpyro adapt one chain per process; we need the same rule vectorized over chains.
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch
from torch import Tensor

__all__ = [
    "MultiplicativeAdaptation",
    "MultiplicativeState",
    "DualAveraging",
    "DualAveragingState",
    "get_adaptation",
]


def _check_target(target_accept: float) -> None:
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept must be in (0, 1); got {target_accept}")


def _statistic(acceptance_prob: Tensor, per_chain: bool) -> Tensor:
    """Per-chain acceptance probabilities, or their mean over chains broadcast to ``(B,)``."""
    a = torch.nan_to_num(acceptance_prob.detach(), nan=0.0)
    return a if per_chain else a.mean().expand_as(a)


class MultiplicativeState(TypedDict):
    """State of :class:`MultiplicativeAdaptation` (a plain dict): the current ``(B,)`` step size."""

    step_size: Tensor


class MultiplicativeAdaptation:
    """NT-EBM's multiplicative step-size rule (appendix A.4): ``eps *= (1+rate)^(+1 if a > target else -1)``.

    Args:
        target_accept: target acceptance probability (0.651 for HMC as in NT-EBM; 0.574 for MALA).
        rate: relative change per step.
        per_chain: adapt each chain on its own acceptance probability.
    """

    def __init__(self, target_accept: float = 0.651, rate: float = 0.02, per_chain: bool = False) -> None:
        _check_target(target_accept)
        if not rate > 0:
            raise ValueError(f"rate must be positive; got {rate}")
        self.target_accept = target_accept
        self.rate = rate
        self.per_chain = per_chain

    def init(self, step_size: Tensor) -> MultiplicativeState:
        """Start from the ``(B,)`` step size ``step_size``."""
        return {"step_size": step_size.detach().clone()}

    def update(self, state: MultiplicativeState, acceptance_prob: Tensor) -> MultiplicativeState:
        r""":math:`\epsilon \leftarrow \epsilon\,(1 + \text{rate})^{\pm 1}`, ``+`` above the target."""
        a = _statistic(acceptance_prob, self.per_chain)
        log_factor = math.log1p(self.rate) * torch.where(a > self.target_accept, 1.0, -1.0).to(a)
        return {"step_size": state["step_size"] * torch.exp(log_factor)}

    def current(self, state: MultiplicativeState) -> Tensor:
        """The step size to use now."""
        return state["step_size"]

    def final(self, state: MultiplicativeState) -> Tensor:
        """The step size to freeze after warm-up (the current one)."""
        return state["step_size"]


class DualAveragingState(TypedDict):
    """Dual-averaging state (a plain dict; tensors ``(B,)``): ``log_step`` (iterate), ``log_step_avg``
    (averaged iterate), ``h_bar`` (averaged acceptance error), ``mu`` (shrinkage point) and the iteration
    count ``t`` (an int)."""

    log_step: Tensor
    log_step_avg: Tensor
    h_bar: Tensor
    mu: Tensor
    t: int


class DualAveraging:
    r"""Dual averaging (Hoffman & Gelman 2014, Alg. 5) toward ``target_accept``.

    Updates :math:`\bar H_t = (1 - \tfrac{1}{t+t_0})\bar H_{t-1} + \tfrac{1}{t+t_0}(\delta - \alpha_t)`,
    :math:`\log\epsilon_t = \mu - \tfrac{\sqrt t}{\gamma}\bar H_t`,
    :math:`\log\bar\epsilon_t = t^{-\kappa}\log\epsilon_t + (1-t^{-\kappa})\log\bar\epsilon_{t-1}`,
    with :math:`\mu = \log(10\,\epsilon_0)`; the final step size is :math:`\bar\epsilon`.

    ``gamma`` defaults to Hoffman & Gelman's 0.05 for the pooled statistic and to 0.2 with
    ``per_chain=True``: a single chain's acceptance probability is much noisier than the mean over
    chains, the iterates then fluctuate widely and, acceptance being nonlinear in the step size, the
    averaged step ends biased (MALA, 20-d Gaussian: 0.62 for a 0.574 target with 0.05; 0.57 with 0.2).
    """

    def __init__(
        self,
        target_accept: float = 0.651,
        gamma: float | None = None,
        t0: float = 10.0,
        kappa: float = 0.75,
        per_chain: bool = False,
    ) -> None:
        _check_target(target_accept)
        if gamma is None:
            gamma = 0.2 if per_chain else 0.05
        if not (gamma > 0 and t0 >= 0 and 0.5 < kappa <= 1):
            raise ValueError(f"need gamma > 0, t0 >= 0, 0.5 < kappa <= 1; got {gamma}, {t0}, {kappa}")
        self.target_accept = target_accept
        self.gamma, self.t0, self.kappa = gamma, t0, kappa
        self.per_chain = per_chain

    def init(self, step_size: Tensor) -> DualAveragingState:
        r""":math:`\epsilon_0` = ``step_size``, :math:`\mu = \log(10\,\epsilon_0)`, :math:`\bar H_0 = 0`."""
        log_step = torch.log(step_size.detach().clone())
        return {
            "log_step": log_step,
            "log_step_avg": log_step.clone(),
            "h_bar": torch.zeros_like(log_step),
            "mu": log_step + math.log(10.0),
            "t": 0,
        }

    def update(self, state: DualAveragingState, acceptance_prob: Tensor) -> DualAveragingState:
        """One iteration of Hoffman & Gelman (2014) Alg. 5 (the updates in the class docstring)."""
        t = state["t"] + 1
        a = _statistic(acceptance_prob, self.per_chain)
        w = 1.0 / (t + self.t0)
        h_bar = (1 - w) * state["h_bar"] + w * (self.target_accept - a)
        log_step = state["mu"] - math.sqrt(t) / self.gamma * h_bar
        eta = t ** (-self.kappa)
        log_step_avg = eta * log_step + (1 - eta) * state["log_step_avg"]
        return {"log_step": log_step, "log_step_avg": log_step_avg, "h_bar": h_bar, "mu": state["mu"], "t": t}

    def current(self, state: DualAveragingState) -> Tensor:
        r"""The iterate :math:`\epsilon_t`, used during warm-up."""
        return torch.exp(state["log_step"])

    def final(self, state: DualAveragingState) -> Tensor:
        r"""The averaged iterate :math:`\bar\epsilon_t`, frozen after warm-up."""
        return torch.exp(state["log_step_avg"])


def get_adaptation(
    adaptation: str | MultiplicativeAdaptation | DualAveraging | None,
    target_accept: float | None = None,
    default_target: float = 0.651,
    owner: str = "kernel",
) -> MultiplicativeAdaptation | DualAveraging | None:
    """An adapter from a name (``"multiplicative"``, ``"dual_averaging"``); adapters and None pass through.

    ``target_accept`` (default ``default_target``) is used only with a name: an adapter object carries
    its own target and ``None`` adapts nothing, so giving ``target_accept`` with either is a
    ``ValueError`` (naming ``owner``, the kernel) rather than an option silently ignored.
    """
    if adaptation is None or not isinstance(adaptation, str):
        if adaptation is not None and not all(
            hasattr(adaptation, m) for m in ("init", "update", "current", "final")
        ):
            raise ValueError("adaptation must be a name, None, or an object with init/update/current/final")
        if target_accept is not None:
            why = "adaptation=None adapts nothing" if adaptation is None else "the adapter has its own target"
            raise ValueError(
                f"{owner} uses option 'target_accept' only with a named adaptation ('multiplicative' or "
                f"'dual_averaging'); {why}"
            )
        return adaptation
    target = default_target if target_accept is None else target_accept
    if adaptation == "multiplicative":
        return MultiplicativeAdaptation(target)
    if adaptation == "dual_averaging":
        return DualAveraging(target)
    raise ValueError(f"adaptation must be 'multiplicative', 'dual_averaging' or None; got '{adaptation}'")
