r"""``run_chain``: the loop that drives any kernel of :mod:`symgen.samplers.base`, and its :class:`Trace`.

``run_chain(kernel, log_prob, x0, n_steps)`` runs every chain at once: optional warm-up adaptation of the
step size (continued across calls through ``adaptation_state``), trajectory thinning, callbacks; the last
step is a ``move`` so that ``K`` unadjusted steps cost ``K`` gradient evaluations. Per-step infos are
copied into buffers preallocated at the first step. Hand-written for the reasons given in
:mod:`symgen.samplers.base`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from symgen.densities import LogDensity
from symgen.precision import full_precision
from symgen.samplers.base import ChainState, Kernel, StepInfo, StepSizeAdapter
from symgen.samplers.compiled import CompiledKernel

__all__ = ["Trace", "run_chain"]


@dataclass
class Trace:
    """Per-step infos of a ``run_chain`` call, stacked along a leading step axis.

    Attributes:
        log_prob, step_size, acceptance_prob, accepted, grad_norm: ``(n_steps, B)``; ``(0, B)`` after
            ``run_chain(record=False)``.
        energy_error: ``(n_steps, B)`` for HMC, else ``None`` (also ``None`` after ``record=False``).
        positions: ``(n_kept, B, *event)`` positions after steps ``thin, 2 thin, ...`` when
            ``keep_trajectory=True``, else ``None``.
        thin: the thinning used for ``positions``.
        n_warmup: number of leading steps used for step-size adaptation.
        state: final :class:`ChainState` (detached); pass it back to ``run_chain`` to continue
            persistent chains with their adapted step sizes. After an unadjusted kernel's final
            ``move`` it is unevaluated (``log_prob``/``grad`` ``None``, see ``run_chain``).
        adaptation_state: the step-size adapter's state after the last adaptation step (a dict of
            tensors and ints), the ``adaptation_state`` passed in when no step adapted, else ``None``;
            pass it back to ``run_chain`` to continue adapting.
        recorded: whether the per-step infos were recorded (``run_chain(record=...)``).
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
    adaptation_state: dict[str, Any] | None = None
    recorded: bool = True

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
        if not self.recorded:
            raise ValueError("no acceptance probabilities were recorded; call run_chain(..., record=True)")
        start = self.n_warmup if discard_warmup else 0
        if start >= self.acceptance_prob.shape[0]:
            raise ValueError("no post-warm-up steps were run")
        return self.acceptance_prob[start:].mean(dim=0)


class _Recorder:
    """Copies step infos (and thinned positions) into buffers preallocated at the first step.

    Writing into fixed buffers (instead of keeping a list of small per-step tensors) keeps the memory
    layout identical from step to step: no per-step allocation survives the step, so the allocator can
    reuse the energy's activation buffers (with glibc malloc, surviving small tensors interleaved with
    large freed ones made the heap grow by megabytes per step). With ``record=False`` only the thinned
    positions (if any) are kept and the infos are never read (so e.g. no gradient norm is computed).
    """

    _FIELDS = ("log_prob", "step_size", "acceptance_prob", "accepted", "grad_norm", "energy_error")

    def __init__(self, n_steps: int, thin: int, keep_trajectory: bool, record: bool = True) -> None:
        self.n_steps = n_steps
        self.record = record
        self.thin = thin
        self.keep_trajectory = keep_trajectory
        self.buffers: dict[str, Tensor] = {}
        self.rows: dict[str, tuple[Tensor, ...]] = {}  # per-step views of the buffers, made once
        self.positions: Tensor | None = None

    def _allocate(self, state: ChainState, info: StepInfo) -> None:
        for name in self._FIELDS if self.record else ():
            value = getattr(info, name)
            if value is not None:
                self.buffers[name] = value.new_empty((self.n_steps, *value.shape))
                self.rows[name] = self.buffers[name].unbind(0)
        if self.keep_trajectory:
            x = state.position
            self.positions = x.new_empty((self.n_steps // self.thin, *x.shape))

    @torch.no_grad()
    def add(self, i: int, state: ChainState, info: StepInfo) -> None:
        if i == 0:
            self._allocate(state, info)
        for name, rows in self.rows.items():
            rows[i].copy_(getattr(info, name))
        if self.positions is not None and (i + 1) % self.thin == 0:
            self.positions[(i + 1) // self.thin - 1].copy_(state.position)

    def trace(self, state: ChainState, n_warmup: int, adaptation_state: dict[str, Any] | None) -> Trace:
        b = state.position.shape[0]

        def get(name: str) -> Tensor:
            if name in self.buffers:
                return self.buffers[name]
            dtype = torch.bool if name == "accepted" else state.position.dtype
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
            adaptation_state=adaptation_state,
            recorded=self.record,
        )


def _check_adaptation_state(adapter: StepSizeAdapter, state: Any, like: Tensor) -> None:
    expected = adapter.init(like.new_ones(1))
    if not isinstance(state, dict) or set(state) != set(expected):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"adaptation_state must be a state of {type(adapter).__name__} (a dict with keys "
            f"{sorted(expected)}, e.g. a previous trace.adaptation_state); got {got}"
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
    adaptation_state: dict[str, Any] | None = None,
    evaluate_final: bool = False,
    autocast: bool = False,
    record: bool = True,
    compile: bool = False,
) -> tuple[Tensor, Trace]:
    r"""Run ``n_steps`` of ``kernel`` on ``log_prob`` from ``x0`` for all chains at once.

    Steps ``1 .. n_steps - 1`` are ``kernel.step``; the last is ``kernel.move`` unless
    ``evaluate_final``, so an unadjusted kernel evaluates the gradient at :math:`x_0, \dots, x_{K-1}`
    only (``K`` evaluations for ``K`` steps, e.g. LFBM Eq. (8) run ``K`` times), with the same random
    draws and positions as when the end point is evaluated. Adjusted kernels (MALA, HMC) evaluate the
    end point in any case (their accept test needs it).

    Args:
        kernel: a :class:`Kernel` (``Langevin``, ``MALA``, ``HMC``...).
        log_prob: target :data:`~symgen.densities.LogDensity`.
        x0: initial positions ``(B, *event)``, or the ``Trace.state`` of a previous run (or
            ``ChainState.from_state_dict`` of a checkpoint) to continue persistent chains with their step
            sizes and step count ``iteration`` (``log_prob`` is re-evaluated, it may have changed).
        n_steps: number of kernel steps.
        thin: keep every ``thin``-th position when ``keep_trajectory``.
        keep_trajectory: record positions (detached) in ``Trace.positions``.
        callback: called after every step with ``{"i", "x", "state", "info"}``.
        progress: show a tqdm progress bar.
        adapt_steps: the first ``adapt_steps`` steps adapt the step size with ``kernel.adaptation``
            (warm-up); afterwards the step size is frozen at the adapter's final value.
        differentiable: override ``kernel.differentiable`` for this run.
        adaptation_state: the adapter state of a previous run (``trace.adaptation_state``): adaptation
            continues from it instead of restarting, and it sets the starting step size --
            ``adapter.current(state)`` when ``adapt_steps > 0`` (so warm-up split over several calls
            equals one long warm-up), ``adapter.final(state)`` otherwise.
        evaluate_final: make the last step a ``kernel.step`` too, so that ``trace.log_prob[-1]``,
            ``trace.grad_norm[-1]`` and ``trace.state`` hold values at the final positions (one more
            gradient evaluation for unadjusted kernels; otherwise those are NaN / ``None``).
        autocast: keep an active ``torch.autocast`` (mixed precision) inside the chain; by default the
            chain runs in full precision even inside an autocast training step (``train.precision``).
        record: record the per-step infos in the trace (default). ``False`` skips that bookkeeping (and
            the per-step gradient norms nobody reads): ``trace.log_prob``, ``step_size``,
            ``acceptance_prob``, ``accepted`` and ``grad_norm`` are then empty ``(0, B)`` tensors,
            ``energy_error`` is ``None``; ``trace.state``, ``trace.adaptation_state``, the trajectory
            (``keep_trajectory``), adaptation and callbacks are unchanged.
        compile: run the kernel's transition compiled by ``torch.compile`` (opt-in;
            :class:`~symgen.samplers.compiled.CompiledKernel`): the same random numbers and the same
            chain as the eager kernel, faster once compiled (compilation takes seconds at the first
            step). A density or kernel that does not compile, or ``differentiable=True``, runs eagerly
            after a one-line ``RuntimeWarning``.

    Returns:
        ``(x, trace)``: final positions ``(B, *event)`` (detached unless differentiable) and the
        :class:`Trace`.
    """
    if not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative int; got {n_steps!r}")
    if not isinstance(thin, int) or thin < 1:
        raise ValueError(f"thin must be a positive int; got {thin!r}")
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be a bool; got {compile!r}")
    if not isinstance(record, bool):
        raise ValueError(f"record must be a bool; got {record!r}")
    if not isinstance(adapt_steps, int) or not 0 <= adapt_steps <= n_steps:
        raise ValueError(f"adapt_steps must be an int in [0, n_steps={n_steps}]; got {adapt_steps!r}")
    if differentiable is not None and differentiable != kernel.differentiable:
        kernel = kernel.replace(differentiable=differentiable)
    adapter = kernel.adaptation
    if adapter is None and (adapt_steps > 0 or adaptation_state is not None):
        what = f"adapt_steps={adapt_steps}" if adapt_steps > 0 else "adaptation_state"
        raise ValueError(
            f"{what} needs a kernel with a step-size adaptation; {type(kernel).__name__} has adaptation=None"
        )
    position = x0.position if isinstance(x0, ChainState) else x0
    start_size = x0.step_size if isinstance(x0, ChainState) else None
    if adaptation_state is not None:
        if not isinstance(position, Tensor):
            raise ValueError(f"x0 must be a tensor of shape (B, *event); got {type(position).__name__}")
        _check_adaptation_state(adapter, adaptation_state, position)
        start_size = (adapter.current if adapt_steps > 0 else adapter.final)(adaptation_state)
    # the chain's gradients stay fp32 under a mixed-precision training step unless asked otherwise
    device_type = position.device.type if isinstance(position, Tensor) else "cpu"
    with contextlib.nullcontext() if autocast else full_precision(device_type):
        state = kernel.init(position, log_prob, step_size=start_size)
        if isinstance(x0, ChainState):  # a persistent chain keeps counting its steps (noise schedules)
            state = dataclasses.replace(state, iteration=x0.iteration)

        adapt_state = adaptation_state
        if adapt_steps > 0 and adapt_state is None:
            adapt_state = adapter.init(state.step_size)
        recorder = _Recorder(n_steps, thin, keep_trajectory, record)
        stepper: Any = CompiledKernel(kernel, log_prob) if compile else kernel
        last = n_steps - 1 if not evaluate_final else -1
        steps: Any = range(n_steps)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc=type(kernel).__name__)
        for i in steps:
            state, info = stepper.move(state, log_prob) if i == last else stepper.step(state, log_prob)
            if i < adapt_steps:
                adapt_state = adapter.update(adapt_state, info.acceptance_prob)
                new_size = (
                    adapter.final(adapt_state) if i == adapt_steps - 1 else adapter.current(adapt_state)
                )
                state = dataclasses.replace(state, step_size=new_size)
            if record or keep_trajectory:
                recorder.add(i, state, info)
            if callback is not None:
                callback({"i": i, "x": state.position, "state": state, "info": info})
        return state.position, recorder.trace(state, adapt_steps, adapt_state)
