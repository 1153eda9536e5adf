r"""The opt-in compiled path of ``run_chain(compile=True)``: a kernel's transition through ``torch.compile``.

Every compilable kernel (:class:`~symgen.samplers.HMC`, :class:`~symgen.samplers.MALA`,
:class:`~symgen.samplers.Langevin` and its subclasses) splits a step in two:

* ``draw``: the step's random numbers (momenta, noise, MH uniforms), drawn eagerly from the kernel's
  generator in the eager kernel's order;
* ``transition(value_and_grad, *tensors)``: the deterministic rest, a pure function of tensors (leapfrog
  trajectory, proposal, accept test), written once and shared by both paths.

The eager kernel calls ``transition`` with ``torch.autograd.grad`` (:meth:`Kernel.gradient`); here it is
compiled whole (``fullgraph=True``, static shapes) with the gradient taken by ``torch.func.grad``, so
that one compiled call runs e.g. all ``n_leapfrog`` gradient evaluations of an HMC step with its
element-wise work fused. The random numbers are the same tensors in both paths, so on a fixed seed the
compiled chain follows the eager chain step for step (up to floating-point reassociation in fused
kernels, which can flip an accept decision that sits on the boundary).

A density that does not compile (data-dependent Python control flow, ``.item()``, calls ``torch.compile``
cannot trace, an unsupported kernel, ``differentiable=True``) falls back to the eager kernel with a
one-line ``RuntimeWarning``; the step being computed is redone eagerly with the same random numbers.
The compiled path never builds a graph to the density's parameters (``differentiable=True`` stays eager).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from symgen.densities import LogDensity
from symgen.samplers.base import ChainState, Kernel, StepInfo, ValueAndGrad
from symgen.samplers.matmul import inductor_options

__all__ = ["CompiledKernel", "compiled_transition", "func_value_and_grad"]


def func_value_and_grad(log_prob: LogDensity) -> ValueAndGrad:
    """``x -> (log_prob(x), grad_x sum_b log_prob(x)_b)`` by ``torch.func.grad``, which ``torch.compile``
    traces into one graph (``torch.autograd.grad`` would break the graph)."""

    def total(x: Tensor) -> tuple[Tensor, Tensor]:
        lp = log_prob(x)
        return lp.sum(), lp

    grad_and_value = torch.func.grad(total, has_aux=True)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        grad, lp = grad_and_value(x)
        return lp, grad

    return value_and_grad


def _one_line(error: BaseException) -> str:
    """``Type: first line`` of the innermost cause (a compiler error wraps the one that matters)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text[:160]}"


_COMPILED: dict[Callable[..., Any], Callable[..., Any]] = {}


def compiled_transition(transition: Callable[..., tuple[Tensor, ...]]) -> Callable[..., tuple[Tensor, ...]]:
    """``torch.compile`` of a kernel class's ``transition`` function, made once per process.

    One compiled wrapper per function keeps dynamo's cache (per code object, entries selected by guards on
    the kernel's options, the density's code and its tensors' shapes) shared by every ``run_chain`` call:
    a density rebuilt each training step with the same code and shapes does not recompile.
    """
    if transition not in _COMPILED:
        _COMPILED[transition] = torch.compile(
            transition, fullgraph=True, dynamic=False, options=inductor_options()
        )
    return _COMPILED[transition]


class CompiledKernel:
    """``kernel.step`` / ``kernel.move`` on one density with the kernel's ``transition`` compiled.

    Built by ``run_chain(compile=True)``; usable alone as ``CompiledKernel(kernel, log_prob)`` with the
    same ``step(state, log_prob)`` / ``move(state, log_prob)`` contract (``log_prob`` must be the density
    it was built for). Compilation happens at the first step (seconds; inductor caches the generated
    code on disk, so later processes compile faster) and is reused by later chains on a density with the
    same code and shapes (:func:`compiled_transition`). Inductor options:
    :func:`symgen.samplers.matmul.inductor_options` (large CPU matrix products on oneDNN).

    Args:
        kernel: a kernel with ``step_with``/``transition`` (``HMC``, ``MALA``, ``Langevin`` and subclasses).
        log_prob: the density the chain runs on.
    """

    def __init__(self, kernel: Kernel, log_prob: LogDensity) -> None:
        self.kernel = kernel
        self.log_prob = log_prob
        self.fallback_reason: str | None = None
        if not callable(getattr(kernel, "transition", None)) or not callable(
            getattr(kernel, "step_with", None)
        ):
            self._give_up(f"{type(kernel).__name__} has no compiled transition")
        elif kernel.differentiable:
            self._give_up("differentiable=True keeps the autograd graph, which the compiled path does not")
        if self.fallback_reason is not None:
            return
        target = getattr(kernel, "_target", lambda lp: lp)(log_prob)
        self._eager = functools.partial(kernel.transition, kernel.gradient(target))
        transition = compiled_transition(type(kernel).transition)
        self._compiled = functools.partial(transition, kernel, func_value_and_grad(target))

    def _give_up(self, reason: str) -> None:
        self.fallback_reason = reason
        warnings.warn(
            f"run_chain(compile=True): {reason}; running the eager kernel", RuntimeWarning, stacklevel=4
        )

    def transition(self, *tensors: Tensor | None) -> tuple[Tensor, ...]:
        """The kernel's transition, compiled; eager (with a warning, once) if compilation fails."""
        if self.fallback_reason is None:
            try:
                with torch.no_grad():
                    return self._compiled(*tensors)
            except Exception as error:  # noqa: BLE001 -- any compiler error means: run eagerly
                self._give_up(f"the density could not be compiled ({_one_line(error)})")
        return self._eager(*tensors)

    def step(self, state: ChainState, log_prob: LogDensity) -> tuple[ChainState, StepInfo]:
        """``kernel.step`` with the compiled transition."""
        self._check(log_prob)
        if self.fallback_reason is not None and not hasattr(self, "_eager"):
            return self.kernel.step(state, log_prob)
        return self.kernel.step_with(state, log_prob, self.transition)

    def move(self, state: ChainState, log_prob: LogDensity) -> tuple[ChainState, StepInfo]:
        """``kernel.move``: eager for kernels whose move skips the evaluation (nothing to compile)."""
        self._check(log_prob)
        if type(self.kernel).move is Kernel.move:
            return self.step(state, log_prob)
        return self.kernel.move(state, log_prob)

    def _check(self, log_prob: LogDensity) -> None:
        if log_prob is not self.log_prob:
            raise ValueError("a CompiledKernel runs the log_prob it was built for; build one per density")
