r"""The flow contract: a module in, a distribution out, with the bijection exposed.

Every flow of symgen follows zuko's design (``flow()`` returns a ``torch.distributions.Distribution``)
and adds what neural transport and CoopFlow need, the bijection itself in both directions:

* ``forward(z) -> (x, ladj)``: latent to data, :math:`x = g(z)`,
  ``ladj`` :math:`= \log|\det \partial x/\partial z|`;
* ``inverse(x) -> (z, ladj)``: data to latent, :math:`z = g^{-1}(x)`,
  ``ladj`` :math:`= \log|\det \partial z/\partial x|`;
* ``base``: :math:`\mathcal{N}(0, I)` over a latent of the *same shape* as the data;
* ``log_prob(x)`` :math:`= \log \mathcal{N}(g^{-1}(x); 0, I) + \log|\det \partial g^{-1}(x)/\partial x|`
  (change of variables, Eq. (2) of the LFBM paper).

Layers (:class:`Bijection`) take tensors with one leading batch dimension and return the per-example
log-determinant, shape ``(B,)``, in float32 or better whatever the input dtype (:func:`ladj_dtype`).

Numerical guards live here: :meth:`FlowDistribution.inverse` rejects non-finite input with a
``ValueError``, and a pass that produces NaN/inf is replayed layer by layer to name the first layer whose
output is non-finite (:class:`NonFiniteError`). zuko's ``NormalizingFlow`` exposes only the data-to-latent
transform and no such guards, so this contract is hand-written.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Size, Tensor, nn
from torch.distributions import Distribution, Independent, Normal, Transform, constraints

__all__ = [
    "Bijection",
    "as_event_shape",
    "Chain",
    "DataDependentInit",
    "Flow",
    "FlowDistribution",
    "FlowTransform",
    "NonFiniteError",
    "check_output",
    "ladj_dtype",
    "standard_normal_log_prob",
    "unchecked",
    "zero_ladj",
]

_LOG_2PI = math.log(2.0 * math.pi)


@contextlib.contextmanager
def unchecked(flow: nn.Module) -> Iterator[None]:
    """Turn a symgen flow's non-finite guard (``check_finite``) off inside the block: for passes at points
    where overflow is expected and handled by the caller (tail latents, chain proposals). Modules without
    the guard are left alone."""
    previous = getattr(flow, "check_finite", None)
    if previous is not None:
        flow.check_finite = False
    try:
        yield
    finally:
        if previous is not None:
            flow.check_finite = previous


class NonFiniteError(FloatingPointError):
    """A flow pass produced NaN or inf; the message names the first offending layer."""


def ladj_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype in which log-determinants are accumulated: ``dtype`` promoted to at least float32."""
    return torch.promote_types(dtype, torch.float32)


def zero_ladj(x: Tensor) -> Tensor:
    """A zero log-determinant of shape ``(B,)`` for the batch ``x`` (accumulation dtype)."""
    return torch.zeros(x.shape[0], dtype=ladj_dtype(x.dtype), device=x.device)


def standard_normal_log_prob(z: Tensor, event_dims: int) -> Tensor:
    r""":math:`\log \mathcal{N}(z; 0, I)` summed over the last ``event_dims`` dims (float32 or better)."""
    dims = tuple(range(z.dim() - event_dims, z.dim()))
    d = math.prod(z.shape[z.dim() - event_dims :])
    sq = z.to(ladj_dtype(z.dtype)).square().sum(dims) if dims else z.to(ladj_dtype(z.dtype)).square()
    return -0.5 * (sq + d * _LOG_2PI)


# --------------------------------------------------------------------------- non-finite tracing


@dataclass
class _Trace:
    names: dict[int, str]
    direction: str


_TRACE: ContextVar[_Trace | None] = ContextVar("symgen_flow_trace", default=None)


def check_output(layer: nn.Module, *tensors: Tensor) -> None:
    """While a failing pass is replayed, raise :class:`NonFiniteError` if ``layer``'s output is not finite.

    Outside a replay this is a no-op, so normal passes pay nothing. Composite bijections call it after
    each child, so the innermost layer whose output first becomes non-finite is the one reported.
    """
    if torch.compiler.is_compiling():  # a compiled pass (run_chain(compile=True)) is never a replay
        return
    trace = _TRACE.get()
    if trace is None:
        return
    for t in tensors:
        if not bool(torch.isfinite(t).all()):
            name = trace.names.get(id(layer)) or type(layer).__name__
            raise NonFiniteError(
                f"flow {trace.direction} produced non-finite values first in layer '{name}' "
                f"({type(layer).__name__}); check its parameters (e.g. an exploding scale) and its input"
            )


@contextlib.contextmanager
def _tracing(root: nn.Module, direction: str) -> Iterator[None]:
    names = {id(m): n for n, m in root.named_modules() if n}
    token = _TRACE.set(_Trace(names, direction))
    try:
        yield
    finally:
        _TRACE.reset(token)


# --------------------------------------------------------------------------- bijections


class Bijection(nn.Module):
    r"""An invertible map between data and latent, with log-determinants.

    ``forward(z) -> (x, log|det dx/dz|)`` (latent to data) and ``inverse(x) -> (z, log|det dz/dx|)``
    (data to latent). Inputs have one leading batch dimension; log-determinants have shape ``(B,)``.
    """

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class Chain(Bijection):
    """Composition of bijections, listed in data-to-latent order (``inverse`` applies ``layers[0]`` first).

    Log-determinants are accumulated in float32 or better (:func:`ladj_dtype`).
    """

    def __init__(self, *layers: Bijection) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = zero_ladj(x)
        for layer in self.layers:
            x, ladj = layer.inverse(x)
            total = total + ladj
            check_output(layer, x, total)
        return x, total

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        total = zero_ladj(z)
        for layer in reversed(self.layers):
            z, ladj = layer.forward(z)
            total = total + ladj
            check_output(layer, z, total)
        return z, total


class DataDependentInit:
    """Mixin for layers initialised from the first data batch (ActNorm); see :meth:`Flow.initialize`."""

    def reset_initialization(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


# --------------------------------------------------------------------------- flow module and distribution


def as_event_shape(event_shape: Sequence[int] | int) -> Size:
    """Validate and normalise an event shape (an int is read as ``(int,)``)."""
    if isinstance(event_shape, int):
        event_shape = (event_shape,)
    try:
        shape = Size(int(s) for s in event_shape)
    except (TypeError, ValueError):
        raise ValueError(f"event_shape must be a tuple of positive ints, got {event_shape!r}") from None
    if len(shape) == 0 or any(s <= 0 for s in shape):
        raise ValueError(f"event_shape must be a non-empty tuple of positive ints, got {tuple(shape)}")
    return shape


class Flow(nn.Module):
    """Base class of symgen flows: ``flow()`` returns a :class:`FlowDistribution`.

    Subclasses set ``self.bijection`` (a :class:`Bijection` mapping data of shape ``event_shape`` to a
    latent of the same shape) in their constructor. ``check_finite`` (default ``True``) turns the
    non-finite guards on or off. ``domain_bound`` is ``b`` for a flow that transforms only the box
    ``[-b, b]^D`` and is the identity outside it (it warns when training data leave the box, see
    :mod:`symgen.flows.domain`), ``None`` for a flow that acts on all of ``R^D``.
    """

    bijection: Bijection
    domain_bound: float | None = None

    def __init__(self, event_shape: Sequence[int] | int) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        self.check_finite = True
        # Follows .to()/.double(): the dtype and device of the base distribution.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def forward(self) -> FlowDistribution:
        """The distribution :math:`p(x)` defined by the flow."""
        return FlowDistribution(self)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """(Re-)run data-dependent initialisation (ActNorm, Standardize) on a batch ``x``, shape
        ``(B, *event_shape)``."""
        for m in self.modules():
            if isinstance(m, DataDependentInit):
                m.reset_initialization()
        was_training = self.training
        self.train()
        try:
            self().inverse(x)
        finally:
            self.train(was_training)

    def run(self, t: Tensor, direction: str) -> tuple[Tensor, Tensor]:
        """Apply the bijection in ``direction`` ("forward" or "inverse") with the non-finite guards."""
        out, ladj = getattr(self.bijection, direction)(t)
        if self.check_finite and not bool(torch.isfinite(out).all() & torch.isfinite(ladj).all()):
            with torch.no_grad(), _tracing(self, direction):
                getattr(self.bijection, direction)(t)
            raise NonFiniteError(
                f"flow {direction} produced non-finite values (not reproducible layer by layer)"
            )
        return out, ladj


class FlowTransform(Transform):
    """The flow's data-to-latent map as a ``torch.distributions.Transform`` (zuko's ``dist.transform``)."""

    bijective = True
    sign = +1

    def __init__(self, dist: FlowDistribution) -> None:
        super().__init__()
        self.dist = dist
        n = len(dist.event_shape)
        self.domain = constraints.independent(constraints.real, n)
        self.codomain = constraints.independent(constraints.real, n)

    def _call(self, x: Tensor) -> Tensor:
        return self.dist.inverse(x)[0]

    def _inverse(self, z: Tensor) -> Tensor:
        return self.dist.forward(z)[0]

    def log_abs_det_jacobian(self, x: Tensor, z: Tensor) -> Tensor:
        return self.dist.inverse(x)[1]

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.dist.inverse(x)


class FlowDistribution(Distribution):
    r"""The distribution of :math:`x = g(z)`, :math:`z \sim \mathcal{N}(0, I)`, for a :class:`Flow`.

    All methods accept any number of leading batch dimensions ``(..., *event_shape)``.
    """

    has_rsample = True
    arg_constraints: dict = {}

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        super().__init__(batch_shape=Size(), event_shape=flow.event_shape, validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, len(self.event_shape))

    @property
    def base(self) -> Distribution:
        r"""The latent distribution :math:`\mathcal{N}(0, I)`, same shape as the data."""
        loc = torch.zeros(self.event_shape, dtype=self.flow.dtype, device=self.flow.device)
        return Independent(Normal(loc, torch.ones_like(loc), validate_args=False), len(self.event_shape))

    @property
    def transform(self) -> FlowTransform:
        """Data-to-latent map as a torch ``Transform`` (``dist.transform.inv(z)`` maps latents to data)."""
        return FlowTransform(self)

    def _flatten(self, t: Tensor, name: str) -> tuple[Tensor, Size]:
        n = len(self.event_shape)
        if not isinstance(t, Tensor) or t.dim() < n or t.shape[t.dim() - n :] != self.event_shape:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(
                f"{name} must have shape (..., {', '.join(map(str, self.event_shape))}), got {got}"
            )
        if t.dtype != self.flow.dtype:
            raise ValueError(
                f"{name} has dtype {t.dtype} but the flow is {self.flow.dtype}; convert one of them "
                "(e.g. flow.double())"
            )
        batch = t.shape[: t.dim() - n]
        return t.reshape(-1, *self.event_shape), batch

    def _run(self, t: Tensor, name: str, direction: str) -> tuple[Tensor, Tensor]:
        flat, batch = self._flatten(t, name)
        if self.flow.check_finite and not bool(torch.isfinite(flat).all()):
            bad = int((~torch.isfinite(flat)).sum())
            raise ValueError(f"flow {direction} received non-finite input {name} ({bad} NaN/inf entries)")
        out, ladj = self.flow.run(flat, direction)
        return out.reshape(*batch, *self.event_shape), ladj.expand(flat.shape[0]).reshape(batch)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        r"""Latent to data: :math:`x = g(z)` and :math:`\log|\det \partial x/\partial z|`."""
        return self._run(z, "z", "forward")

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Data to latent: :math:`z = g^{-1}(x)` and :math:`\log|\det \partial z/\partial x|`."""
        return self._run(x, "x", "inverse")

    def log_prob(self, x: Tensor) -> Tensor:
        r""":math:`\log p(x) = \log \mathcal{N}(g^{-1}(x); 0, I) + \log|\det \partial g^{-1}/\partial x|`

        (Eq. (2) of the LFBM paper); differentiable with respect to ``x`` and the parameters."""
        z, ladj = self.inverse(x)
        return standard_normal_log_prob(z, len(self.event_shape)) + ladj

    def _latent(self, sample_shape: Sequence[int] | int, temperature: float) -> Tensor:
        if isinstance(sample_shape, int):
            sample_shape = (sample_shape,)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        shape = Size(sample_shape) + self.event_shape
        return temperature * torch.randn(shape, dtype=self.flow.dtype, device=self.flow.device)

    def rsample(self, sample_shape: Sequence[int] | int = Size(), temperature: float = 1.0) -> Tensor:
        r"""Reparameterised samples :math:`g(T\epsilon)`, :math:`\epsilon \sim \mathcal{N}(0, I)`, temperature
        :math:`T`; shape ``(*sample_shape, *event_shape)``."""
        return self.forward(self._latent(sample_shape, temperature))[0]

    def sample(self, sample_shape: Sequence[int] | int = Size(), temperature: float = 1.0) -> Tensor:
        """Samples without gradient tracking (``temperature`` < 1: Glow's reduced-temperature samples)."""
        with torch.no_grad():
            return self.rsample(sample_shape, temperature)

    def rsample_and_log_prob(
        self, sample_shape: Sequence[int] | int = Size(), temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        r"""Samples and their log-density under the (untempered) flow, from one forward pass:
        :math:`\log p(x) = \log \mathcal{N}(z; 0, I) - \log|\det \partial x/\partial z|`."""
        z = self._latent(sample_shape, temperature)
        x, ladj = self.forward(z)
        return x, standard_normal_log_prob(z, len(self.event_shape)) - ladj

    def __repr__(self) -> str:
        return f"FlowDistribution({type(self.flow).__name__}, event_shape={tuple(self.event_shape)})"
