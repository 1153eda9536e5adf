r"""Chain records and the kernel contract shared by every symgen sampler (``run_chain`` is in
:mod:`symgen.samplers.chain`).

A *kernel* (BlackJAX-style) is two methods over explicit records:

* ``init(x0, log_prob, step_size=None) -> ChainState`` evaluates ``log_prob`` and its gradient at the
  start; ``step_size`` (float or per-chain ``(B,)`` tensor) overrides the kernel's default, which is how
  persistent chains keep their adapted step sizes;
* ``step(state, log_prob) -> (ChainState, StepInfo)`` moves every chain once and evaluates ``log_prob``
  and its gradient at the new positions.

A third method, ``move(state, log_prob)``, is ``step`` without the evaluation at the new positions for
kernels that do not need it (unadjusted Langevin: the next step needs the gradient, this one does not);
every other kernel's ``move`` is its ``step``. ``run_chain`` makes its last step a ``move``, so ``K``
unadjusted steps cost ``K`` gradient evaluations (at :math:`x_0, \dots, x_{K-1}`), like a hand-written
loop, and leave the same positions.

Chains are the leading batch dimension of ``x`` (``(B, *event)``); step sizes are ``(B,)`` tensors that
broadcast over the event dimensions. Gradients are ``torch.autograd.grad(log_prob(x).sum(), x)``: only
``x`` is differentiated, parameters' ``.grad`` are never touched and, unless ``differentiable=True``, no
graph survives a step (memory is constant in the number of steps). With ``differentiable=True`` the
graph is kept (``create_graph=True``) so that a loss on the final samples can be back-propagated through
the whole chain to ``x0`` and to the parameters of ``log_prob`` (short-run EBM / generator-loss modes).

Kernel options are the constructor's arguments: they are recorded at construction, ``kernel.options``
returns them, ``kernel.replace(**changes)`` builds a new kernel from them (so every option is validated
again) and an option a kernel does not take is a ``ValueError`` naming the option and the kernel.

Persistent chains (NT-EBM's HMC chains, VAEBM's optional buffer): ``run_chain`` returns the final
:class:`ChainState` and the step-size adapter's state (``trace.adaptation_state``) and accepts both back
(``x0=trace.state, adaptation_state=trace.adaptation_state``), so adaptation continues instead of
restarting. ``ChainState.state_dict()`` and the adapter state are plain dicts of tensors and ints that
``torch.load(weights_only=True)`` reads back.

The loop is hand-written because no maintained PyTorch library offers batched per-chain kernels with
this record/trace contract (pyro's MCMC runs chains in separate processes).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from symgen.densities import LogDensity, chain_sum, check_log_prob_output

__all__ = [
    "ChainState",
    "StepInfo",
    "Kernel",
    "StepSizeAdapter",
    "value_and_grad",
    "per_chain",
    "chain_norm",
    "as_step_size",
    "ValueAndGrad",
]

ValueAndGrad = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``x -> (log_prob(x), grad_x log_prob(x))`` for one density: what a kernel's ``transition`` calls."""


@dataclass
class ChainState:
    """Where every chain is.

    Attributes:
        position: ``(B, *event)`` current points (detached unless the kernel is differentiable).
        log_prob: ``(B,)`` ``log_prob(position)``, or ``None`` when the position has not been evaluated
            (after :meth:`Kernel.move`, e.g. the final state of an unadjusted ``run_chain``).
        grad: ``(B, *event)`` ``grad log_prob(position)``, or ``None`` with ``log_prob``.
        step_size: ``(B,)`` per-chain step size the next step will use.
        iteration: number of steps taken so far (drives noise schedules).
    """

    position: Tensor
    log_prob: Tensor | None
    grad: Tensor | None
    step_size: Tensor
    iteration: int = 0

    @property
    def evaluated(self) -> bool:
        """Whether ``log_prob`` and ``grad`` hold the values at ``position``."""
        return self.log_prob is not None and self.grad is not None

    def detach(self) -> ChainState:
        """A copy with every tensor detached from the autograd graph."""
        return dataclasses.replace(
            self,
            position=self.position.detach(),
            log_prob=None if self.log_prob is None else self.log_prob.detach(),
            grad=None if self.grad is None else self.grad.detach(),
            step_size=self.step_size.detach(),
        )

    def state_dict(self) -> dict[str, Any]:
        """``{"position", "step_size", "iteration"}`` (detached tensors and an int) for a checkpoint.

        ``log_prob`` and ``grad`` are left out: the density changes between calls of a persistent chain,
        so ``run_chain`` evaluates them again. ``torch.load(weights_only=True)`` reads the dict back.
        """
        return {
            "position": self.position.detach(),
            "step_size": self.step_size.detach(),
            "iteration": int(self.iteration),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ChainState:
        """The (unevaluated) state saved by :meth:`state_dict`; pass it to ``run_chain`` as ``x0``."""
        missing = {"position", "step_size", "iteration"} - set(state)
        if missing:
            raise ValueError(f"a ChainState dict needs {sorted(missing)} (from ChainState.state_dict())")
        return cls(state["position"], None, None, state["step_size"], int(state["iteration"]))


class StepInfo:
    """What one step did, one entry per chain (all tensors ``(B,)``, detached).

    Attributes:
        log_prob: log-density at the new position (NaN after a :meth:`Kernel.move` that did not
            evaluate it).
        step_size: step size used by this step.
        acceptance_prob: Metropolis-Hastings acceptance probability (1 for unadjusted kernels).
        accepted: whether the proposal was accepted (always true for unadjusted kernels).
        grad_norm: L2 norm of ``grad log_prob`` at the new position (before any clipping; NaN like
            ``log_prob``). Kernels pass the gradient itself (``grad=``) and the norm is computed on first
            access, so a step whose info nobody reads (``run_chain(record=False)``) does not pay for it.
        energy_error: HMC only: ``H(proposal) - H(current)``; ``None`` otherwise.
    """

    __slots__ = (
        "log_prob",
        "step_size",
        "acceptance_prob",
        "accepted",
        "energy_error",
        "_grad_norm",
        "_grad",
    )

    def __init__(
        self,
        log_prob: Tensor,
        step_size: Tensor,
        acceptance_prob: Tensor,
        accepted: Tensor,
        grad_norm: Tensor | None = None,
        energy_error: Tensor | None = None,
        *,
        grad: Tensor | None = None,
    ) -> None:
        if (grad_norm is None) == (grad is None):
            raise ValueError(
                "StepInfo needs exactly one of grad_norm and grad (the gradient at the new position)"
            )
        self.log_prob = log_prob
        self.step_size = step_size
        self.acceptance_prob = acceptance_prob
        self.accepted = accepted
        self.energy_error = energy_error
        self._grad_norm = grad_norm
        self._grad = grad

    @property
    def grad_norm(self) -> Tensor:
        """``chain_norm(grad)`` at the new position, computed once on first access."""
        if self._grad_norm is None:
            self._grad_norm = chain_norm(self._grad.detach())
            self._grad = None
        return self._grad_norm

    def __repr__(self) -> str:
        fields = ("log_prob", "step_size", "acceptance_prob", "accepted", "grad_norm", "energy_error")
        return "StepInfo(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"


class StepSizeAdapter(Protocol):
    """Functional step-size adaptation (see :mod:`symgen.samplers.adaptation`).

    The state is a plain ``dict`` of tensors and ints, so that a trainer can checkpoint it.
    """

    def init(self, step_size: Tensor) -> dict[str, Any]: ...

    def update(self, state: dict[str, Any], acceptance_prob: Tensor) -> dict[str, Any]: ...

    def current(self, state: dict[str, Any]) -> Tensor: ...

    def final(self, state: dict[str, Any]) -> Tensor: ...


@functools.cache
def _option_signature(cls: type) -> inspect.Signature:
    """The constructor signature of a kernel class, without ``self``."""
    sig = inspect.signature(cls.__init__)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def _option_names(cls: type) -> list[str]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in _option_signature(cls).parameters.items() if p.kind in kinds]


def _takes_any_keyword(cls: type) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in _option_signature(cls).parameters.values())


def _unknown_option_error(cls: type, name: str) -> ValueError:
    return ValueError(
        f"{cls.__name__} does not take option '{name}'; its options are: {', '.join(_option_names(cls))}"
    )


class Kernel:
    """Base class of symgen kernels: holds the options every kernel shares.

    Subclasses implement :meth:`step`, may override :meth:`init`, and override :meth:`move` when a step
    does not need ``log_prob`` at its new positions. A kernel's options are its constructor's
    arguments, recorded at construction (:attr:`options`); :meth:`replace` rebuilds the kernel from them.
    An argument the constructor does not take raises a ``ValueError`` naming it and the kernel.

    Args:
        step_size: default step size, a float or a per-chain ``(B,)`` tensor.
        differentiable: keep the autograd graph through the chain (``create_graph=True``).
        generator: optional ``torch.Generator`` for the kernel's random numbers.
        adaptation: a step-size adapter used by ``run_chain(adapt_steps>0)``, or ``None``.
    """

    _options: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Kernel:
        self = super().__new__(cls)
        sig = _option_signature(cls)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            if not _takes_any_keyword(cls):
                for name in kwargs:
                    if name not in sig.parameters:
                        raise _unknown_option_error(cls, name) from None
            if not args and not kwargs:  # copy/pickle protocol: the instance dict is restored after
                return self
            raise
        bound.apply_defaults()
        options: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = sig.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                options.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                options[name] = value
        self._options = options
        return self

    def __init__(
        self,
        step_size: float | Tensor,
        differentiable: bool = False,
        generator: torch.Generator | None = None,
        adaptation: StepSizeAdapter | None = None,
    ) -> None:
        if isinstance(step_size, (int, float)) and not step_size > 0:
            raise ValueError(f"step_size must be positive; got {step_size}")
        self.step_size = step_size
        self.differentiable = bool(differentiable)
        self.generator = generator
        self.adaptation = adaptation

    @property
    def options(self) -> dict[str, Any]:
        """The constructor arguments this kernel was built with (defaults filled in)."""
        return dict(self._options)

    def replace(self, **changes: Any) -> Kernel:
        """A new kernel of the same class with some options changed (e.g. ``differentiable=True``).

        Every option is validated again by the constructor; an option the kernel does not take (for
        instance ``MALA(...).replace(clamp=(-1, 1))``) raises a ``ValueError`` naming it.
        """
        cls = type(self)
        if not _takes_any_keyword(cls):
            for name in changes:
                if name not in _option_signature(cls).parameters:
                    raise _unknown_option_error(cls, name)
        return cls(**{**self._options, **changes})

    def init(self, x0: Tensor, log_prob: LogDensity, step_size: float | Tensor | None = None) -> ChainState:
        """Evaluate ``log_prob`` and its gradient at ``x0``; returns the initial :class:`ChainState`."""
        if not isinstance(x0, Tensor) or x0.dim() < 2:
            shape = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
            raise ValueError(f"x0 must be a tensor of shape (B, *event) with chains first; got {shape}")
        if not x0.is_floating_point():
            raise ValueError(f"x0 must be a floating-point tensor; got {x0.dtype}")
        x = x0 if self.differentiable else x0.detach()
        lp, grad = value_and_grad(log_prob, x, self.differentiable)
        check_log_prob_output(lp, x0)
        size = as_step_size(self.step_size if step_size is None else step_size, x0)
        return ChainState(position=x, log_prob=lp, grad=grad, step_size=size, iteration=0)

    def step(self, state: ChainState, log_prob: LogDensity) -> tuple[ChainState, StepInfo]:
        """Move every chain once; the returned state is evaluated at the new positions."""
        raise NotImplementedError

    def move(self, state: ChainState, log_prob: LogDensity) -> tuple[ChainState, StepInfo]:
        """:meth:`step`, except that the new positions may be left unevaluated.

        Kernels whose step needs ``log_prob`` only where it starts (unadjusted Langevin) return a state
        with ``log_prob``/``grad`` ``None`` and NaN ``info.log_prob``/``info.grad_norm``, saving one
        gradient evaluation; this default is :meth:`step`.
        """
        return self.step(state, log_prob)

    def gradient(self, log_prob: LogDensity) -> ValueAndGrad:
        """``x -> value_and_grad(log_prob, x, self.differentiable)``, the eager gradient of ``transition``."""
        return functools.partial(value_and_grad, log_prob, differentiable=self.differentiable)

    def _evaluated(self, state: ChainState, log_prob: LogDensity) -> ChainState:
        """``state`` with ``log_prob`` and ``grad`` at its position, evaluating them if missing."""
        if state.evaluated:
            return state
        lp, grad = value_and_grad(log_prob, state.position, self.differentiable)
        check_log_prob_output(lp, state.position)
        return dataclasses.replace(state, log_prob=lp, grad=grad)

    def _randn(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.generator, device=like.device, dtype=like.dtype)

    def _rand(self, n: int, like: Tensor) -> Tensor:
        return torch.rand(n, generator=self.generator, device=like.device, dtype=like.dtype)


def value_and_grad(log_prob: LogDensity, x: Tensor, differentiable: bool = False) -> tuple[Tensor, Tensor]:
    """``(log_prob(x), grad_x log_prob(x))`` by ``torch.autograd.grad`` w.r.t. ``x`` only.

    With ``differentiable=False`` the results carry no graph; otherwise the gradient is built with
    ``create_graph=True`` so both can be back-propagated (to ``x`` and to parameters of ``log_prob``).
    Works inside ``torch.no_grad()`` blocks.
    """
    with torch.enable_grad():
        if not differentiable or not x.requires_grad:
            x = x.detach().requires_grad_(True)
        lp = log_prob(x)
        grad = None
        if lp.requires_grad:
            (grad,) = torch.autograd.grad(lp.sum(), x, create_graph=differentiable, allow_unused=True)
        if grad is None:  # a density that does not depend on x (e.g. flat)
            grad = torch.zeros_like(x)
    if not differentiable:
        lp = lp.detach()
    return lp, grad


def per_chain(t: Tensor, x: Tensor) -> Tensor:
    """View a ``(B,)`` tensor as ``(B, 1, ..., 1)`` so it broadcasts over ``x``'s event dims."""
    return t.reshape(t.shape + (1,) * (x.dim() - 1))


def chain_norm(t: Tensor) -> Tensor:
    r"""Per-chain Euclidean norm :math:`\|t_b\|_2 = (\sum_j t_{b,j}^2)^{1/2}`, ``(B, *event) -> (B,)``.

    Built on :func:`symgen.densities.chain_sum`, the one per-chain reduction.
    """
    return chain_sum(t * t).sqrt()


def as_step_size(step_size: float | Tensor, x: Tensor) -> Tensor:
    """A ``(B,)`` step-size tensor on ``x``'s device/dtype from a float, a scalar or a ``(B,)`` tensor."""
    b = x.shape[0]
    if isinstance(step_size, Tensor):
        if step_size.dim() > 1 or (step_size.dim() == 1 and step_size.shape[0] != b):
            raise ValueError(
                f"step_size tensor must be a scalar or have shape (B,) = ({b},); got {tuple(step_size.shape)}"
            )
        return step_size.detach().to(device=x.device, dtype=x.dtype).expand(b).clone()
    if not isinstance(step_size, (int, float)) or not step_size > 0:
        raise ValueError(f"step_size must be a positive float or a (B,) tensor; got {step_size!r}")
    return torch.full((b,), float(step_size), device=x.device, dtype=x.dtype)
