r"""Chain records, the kernel contract and the ``run_chain`` loop shared by every symgen sampler.

A *kernel* (BlackJAX-style) is two methods over explicit records:

* ``init(x0, log_prob, step_size=None) -> ChainState`` evaluates ``log_prob`` and its gradient at the
  start; ``step_size`` (float or per-chain ``(B,)`` tensor) overrides the kernel's default, which is how
  persistent chains keep their adapted step sizes;
* ``step(state, log_prob) -> (ChainState, StepInfo)`` moves every chain once.

Chains are the leading batch dimension of ``x`` (``(B, *event)``); step sizes are ``(B,)`` tensors that
broadcast over the event dimensions. Gradients are ``torch.autograd.grad(log_prob(x).sum(), x)``: only
``x`` is differentiated, parameters' ``.grad`` are never touched and, unless ``differentiable=True``, no
graph survives a step (memory is constant in the number of steps). With ``differentiable=True`` the
graph is kept (``create_graph=True``) so that a loss on the final samples can be back-propagated through
the whole chain to ``x0`` and to the parameters of ``log_prob`` (short-run EBM / generator-loss modes).

The loop is hand-written because no maintained PyTorch library offers batched per-chain kernels with
this record/trace contract (pyro's MCMC runs chains in separate processes).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from symgen.densities import LogDensity, check_log_prob_output

__all__ = [
    "ChainState",
    "StepInfo",
    "Trace",
    "Kernel",
    "StepSizeAdapter",
    "run_chain",
    "value_and_grad",
    "per_chain",
    "as_step_size",
]


@dataclass
class ChainState:
    """Where every chain is.

    Attributes:
        position: ``(B, *event)`` current points (detached unless the kernel is differentiable).
        log_prob: ``(B,)`` ``log_prob(position)``.
        grad: ``(B, *event)`` ``grad log_prob(position)``.
        step_size: ``(B,)`` per-chain step size the next step will use.
        iteration: number of steps taken so far (drives noise schedules).
    """

    position: Tensor
    log_prob: Tensor
    grad: Tensor
    step_size: Tensor
    iteration: int = 0

    def detach(self) -> ChainState:
        """A copy with every tensor detached from the autograd graph."""
        return dataclasses.replace(
            self,
            position=self.position.detach(),
            log_prob=self.log_prob.detach(),
            grad=self.grad.detach(),
            step_size=self.step_size.detach(),
        )


@dataclass
class StepInfo:
    """What one step did, one entry per chain (all tensors ``(B,)``, detached).

    Attributes:
        log_prob: log-density at the new position.
        step_size: step size used by this step.
        acceptance_prob: Metropolis-Hastings acceptance probability (1 for unadjusted kernels).
        accepted: whether the proposal was accepted (always true for unadjusted kernels).
        grad_norm: L2 norm of ``grad log_prob`` at the new position (before any clipping).
        energy_error: HMC only: ``H(proposal) - H(current)``; ``None`` otherwise.
    """

    log_prob: Tensor
    step_size: Tensor
    acceptance_prob: Tensor
    accepted: Tensor
    grad_norm: Tensor
    energy_error: Tensor | None = None


@dataclass
class Trace:
    """Per-step infos of a ``run_chain`` call, stacked along a leading step axis.

    Attributes:
        log_prob, step_size, acceptance_prob, accepted, grad_norm: ``(n_steps, B)``.
        energy_error: ``(n_steps, B)`` for HMC, else ``None``.
        positions: ``(n_kept, B, *event)`` positions after steps ``thin, 2 thin, ...`` when
            ``keep_trajectory=True``, else ``None``.
        thin: the thinning used for ``positions``.
        n_warmup: number of leading steps used for step-size adaptation.
        state: final :class:`ChainState` (detached); pass it back to ``run_chain`` to continue
            persistent chains with their adapted step sizes.
    """

    log_prob: Tensor
    step_size: Tensor
    acceptance_prob: Tensor
    accepted: Tensor
    grad_norm: Tensor
    energy_error: Tensor | None
    positions: Tensor | None
    thin: int
    n_warmup: int
    state: ChainState

    def samples(self, discard_warmup: bool = True) -> Tensor:
        """Recorded positions ``(n, B, *event)``, without those taken during warm-up by default."""
        if self.positions is None:
            raise ValueError("no trajectory was recorded; call run_chain(..., keep_trajectory=True)")
        if not discard_warmup:
            return self.positions
        steps_done = (torch.arange(self.positions.shape[0]) + 1) * self.thin
        first = int((steps_done <= self.n_warmup).sum())  # kept positions taken during warm-up
        return self.positions[first:]

    def acceptance_rate(self, discard_warmup: bool = True) -> Tensor:
        """Mean acceptance probability per chain ``(B,)`` (after warm-up by default)."""
        start = self.n_warmup if discard_warmup else 0
        if start >= self.acceptance_prob.shape[0]:
            raise ValueError("no post-warm-up steps were run")
        return self.acceptance_prob[start:].mean(dim=0)


class StepSizeAdapter(Protocol):
    """Functional step-size adaptation (see :mod:`symgen.samplers.adaptation`)."""

    def init(self, step_size: Tensor) -> Any: ...

    def update(self, state: Any, acceptance_prob: Tensor) -> Any: ...

    def current(self, state: Any) -> Tensor: ...

    def final(self, state: Any) -> Tensor: ...


class Kernel:
    """Base class of symgen kernels: holds the options every kernel shares.

    Subclasses implement :meth:`step` and may override :meth:`init`.

    Args:
        step_size: default step size, a float or a per-chain ``(B,)`` tensor.
        differentiable: keep the autograd graph through the chain (``create_graph=True``).
        generator: optional ``torch.Generator`` for the kernel's random numbers.
        adaptation: a step-size adapter used by ``run_chain(adapt_steps>0)``, or ``None``.
    """

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

    def replace(self, **changes: Any) -> Kernel:
        """A shallow copy with some attributes changed (e.g. ``differentiable=True``)."""
        new = copy.copy(self)
        for key, value in changes.items():
            if not hasattr(new, key):
                raise ValueError(f"{type(self).__name__} has no option '{key}'")
            setattr(new, key, value)
        return new

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
        """Move every chain once."""
        raise NotImplementedError

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


class _Recorder:
    """Copies step infos (and thinned positions) into buffers preallocated at the first step.

    Writing into fixed buffers (instead of keeping a list of small per-step tensors) keeps the memory
    layout identical from step to step: no per-step allocation survives the step, so the allocator can
    reuse the energy's activation buffers (with glibc malloc, surviving small tensors interleaved with
    large freed ones made the heap grow by megabytes per step).
    """

    _FIELDS = ("log_prob", "step_size", "acceptance_prob", "accepted", "grad_norm", "energy_error")

    def __init__(self, n_steps: int, thin: int, keep_trajectory: bool) -> None:
        self.n_steps = n_steps
        self.thin = thin
        self.keep_trajectory = keep_trajectory
        self.buffers: dict[str, Tensor] = {}
        self.positions: Tensor | None = None

    def _allocate(self, state: ChainState, info: StepInfo) -> None:
        for name in self._FIELDS:
            value = getattr(info, name)
            if value is not None:
                self.buffers[name] = value.new_empty((self.n_steps, *value.shape))
        if self.keep_trajectory:
            x = state.position
            self.positions = x.new_empty((self.n_steps // self.thin, *x.shape))

    @torch.no_grad()
    def add(self, i: int, state: ChainState, info: StepInfo) -> None:
        if not self.buffers:
            self._allocate(state, info)
        for name, buf in self.buffers.items():
            buf[i].copy_(getattr(info, name))
        if self.positions is not None and (i + 1) % self.thin == 0:
            self.positions[(i + 1) // self.thin - 1].copy_(state.position)

    def trace(self, state: ChainState, n_warmup: int) -> Trace:
        b = state.position.shape[0]

        def get(name: str) -> Tensor:
            if name in self.buffers:
                return self.buffers[name]
            dtype = torch.bool if name == "accepted" else state.log_prob.dtype
            return torch.zeros((0, b), dtype=dtype, device=state.position.device)

        return Trace(
            log_prob=get("log_prob"),
            step_size=get("step_size"),
            acceptance_prob=get("acceptance_prob"),
            accepted=get("accepted"),
            grad_norm=get("grad_norm"),
            energy_error=self.buffers.get("energy_error"),
            positions=self.positions,
            thin=self.thin,
            n_warmup=n_warmup,
            state=state.detach(),
        )


def run_chain(
    kernel: Kernel,
    log_prob: LogDensity,
    x0: Tensor | ChainState,
    n_steps: int,
    thin: int = 1,
    keep_trajectory: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
    adapt_steps: int = 0,
    differentiable: bool | None = None,
) -> tuple[Tensor, Trace]:
    """Run ``n_steps`` of ``kernel`` on ``log_prob`` from ``x0`` for all chains at once.

    Args:
        kernel: a :class:`Kernel` (``Langevin``, ``MALA``, ``HMC``...).
        log_prob: target :data:`~symgen.densities.LogDensity`.
        x0: initial positions ``(B, *event)``, or the ``Trace.state`` of a previous run to continue
            persistent chains with their step sizes (``log_prob`` is re-evaluated, it may have changed).
        n_steps: number of kernel steps.
        thin: keep every ``thin``-th position when ``keep_trajectory``.
        keep_trajectory: record positions (detached) in ``Trace.positions``.
        callback: called after every step with ``{"i", "x", "state", "info"}``.
        progress: show a tqdm progress bar.
        adapt_steps: the first ``adapt_steps`` steps adapt the step size with ``kernel.adaptation``
            (warm-up); afterwards the step size is frozen at the adapter's final value.
        differentiable: override ``kernel.differentiable`` for this run.

    Returns:
        ``(x, trace)``: final positions ``(B, *event)`` (detached unless differentiable) and the
        :class:`Trace`.
    """
    if not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative int; got {n_steps!r}")
    if not isinstance(thin, int) or thin < 1:
        raise ValueError(f"thin must be a positive int; got {thin!r}")
    if not isinstance(adapt_steps, int) or not 0 <= adapt_steps <= n_steps:
        raise ValueError(f"adapt_steps must be an int in [0, n_steps={n_steps}]; got {adapt_steps!r}")
    if differentiable is not None and differentiable != kernel.differentiable:
        kernel = kernel.replace(differentiable=differentiable)
    adapter = kernel.adaptation
    if adapt_steps > 0 and adapter is None:
        raise ValueError(
            f"adapt_steps={adapt_steps} needs a kernel with a step-size adaptation; "
            f"{type(kernel).__name__} has adaptation=None"
        )
    if isinstance(x0, ChainState):
        state = kernel.init(x0.position, log_prob, step_size=x0.step_size)
    else:
        state = kernel.init(x0, log_prob)

    adapt_state = adapter.init(state.step_size) if adapt_steps > 0 else None
    recorder = _Recorder(n_steps, thin, keep_trajectory)
    steps: Any = range(n_steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=type(kernel).__name__)
    for i in steps:
        state, info = kernel.step(state, log_prob)
        if i < adapt_steps:
            adapt_state = adapter.update(adapt_state, info.acceptance_prob)
            new_size = adapter.final(adapt_state) if i == adapt_steps - 1 else adapter.current(adapt_state)
            state = dataclasses.replace(state, step_size=new_size)
        recorder.add(i, state, info)
        if callback is not None:
            callback({"i": i, "x": state.position, "state": state, "info": info})
    return state.position, recorder.trace(state, adapt_steps)
