r"""Vector flows for latent priors and 2-D data: zuko's RealNVP / NSF / MAF behind the symgen contract, and
the
fully connected Glow of the LFBM prior.

* ``realnvp``, ``nsf``, ``maf``: zuko's flows (maintained, tested); only their transforms are used, each zuko
  transformation wrapped as one layer (:class:`ZukoLayer`) so that non-finite values are traced to it. Their
  affine scales are soft-clamped by zuko (``MonotonicAffineTransform``, slope >= 1e-3). GLF's prior (four
  affine couplings with 3-layer MLPs, Sec. 3.4.3 of the dissertation) is ``realnvp`` with ``transforms=4``.
* ``glow_vector``: the LFBM prior, "a fully-connected version of Glow" with 5 steps by default (appendix D of
  the LFBM paper): ActNorm (data-dependent init), LU invertible linear layer, affine coupling with an MLP
  conditioner (zuko's MLP) and scale ``sigmoid(h + 2)``. zuko lacks ActNorm and the sigmoid-bounded coupling,
  so those layers are hand-written in :mod:`symgen.flows.layers` and :mod:`symgen.flows.coupling`.

Importing zuko sets ``torch.distributions.Distribution``'s default argument validation off globally; this
module restores torch's defaults right after the import.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Sequence

from torch import Tensor, nn
from torch.distributions import Distribution

from symgen.flows.base import Bijection, Chain, Flow
from symgen.flows.coupling import ChannelCoupling, check_coupling_kind
from symgen.flows.domain import warn_outside_domain
from symgen.flows.layers import ActNorm, InvertibleLinear
from symgen.registry import FLOWS

__all__ = ["MAF", "NSF", "BoundedZukoLayer", "GlowVector", "RealNVP", "ZukoLayer", "zuko_mlp"]


def _import_zuko():  # noqa: ANN202
    """Import zuko without leaking its global ``Distribution`` patches (validation off, arg_constraints)."""
    if "zuko" in sys.modules:
        return sys.modules["zuko"]
    validate = Distribution._validate_args
    arg_constraints = Distribution.__dict__.get("arg_constraints")
    import zuko  # noqa: PLC0415

    Distribution.set_default_validate_args(validate)
    if arg_constraints is not None:
        Distribution.arg_constraints = arg_constraints
    return zuko


zuko = _import_zuko()


def zuko_mlp(in_features: int, out_features: int, width: int, hidden_layers: int = 2) -> nn.Module:
    """zuko's MLP with ``hidden_layers`` ReLU layers of ``width`` units; the output layer starts at zero."""
    if hidden_layers < 1 or width < 1:
        raise ValueError(f"need hidden_layers >= 1 and width >= 1, got {hidden_layers}, {width}")
    net = zuko.nn.MLP(in_features, out_features, hidden_features=[width] * hidden_layers)
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def _features(event_shape: Sequence[int], name: str) -> int:
    if len(event_shape) != 1:
        raise ValueError(f"{name} is a vector flow: event_shape must be (D,), got {tuple(event_shape)}")
    return int(event_shape[0])


class ZukoLayer(Bijection):
    """One unconditional zuko lazy transformation (data to latent, as zuko) as a :class:`Bijection`."""

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform().call_and_ladj(x)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform().inv.call_and_ladj(z)


class BoundedZukoLayer(ZukoLayer):
    """A :class:`ZukoLayer` that transforms only ``[-bound, bound]^D`` (identity outside).

    In training mode its ``inverse`` warns once per instance (:class:`symgen.flows.OutOfDomainWarning`,
    naming ``flow_name`` and ``bound``) when its input leaves the box. Same parameters and ``state_dict``
    keys as :class:`ZukoLayer`.
    """

    def __init__(self, transform: nn.Module, bound: float, flow_name: str) -> None:
        super().__init__(transform)
        self.bound, self.flow_name = float(bound), flow_name
        self.warned = False

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not self.warned:
            self.warned = warn_outside_domain(x, self.bound, self.flow_name)
        return super().inverse(x)


def _wrap(flow: nn.Module) -> Chain:
    return Chain(*(ZukoLayer(t) for t in flow.transform.transforms))


def _spline_bound() -> float:
    """Half-width of the box on which zuko's rational-quadratic splines act (its default, 5)."""
    return float(inspect.signature(zuko.transforms.MonotonicRQSTransform).parameters["bound"].default)


@FLOWS.register("realnvp", help="RealNVP vector flow (zuko): affine couplings with MLP conditioners")
class RealNVP(Flow):
    """zuko's RealNVP on vectors of shape ``(D,)``.

    Arguments:
        event_shape: ``(D,)``.
        transforms: number of coupling layers (alternating checkered masks).
        hidden_features: hidden widths of each conditioner MLP.
        randmask: random instead of alternating masks.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        transforms: int = 4,
        hidden_features: Sequence[int] = (64, 64),
        randmask: bool = False,
    ) -> None:
        super().__init__(event_shape)
        d = _features(self.event_shape, "realnvp")
        flow = zuko.flows.RealNVP(
            d, transforms=transforms, hidden_features=list(hidden_features), randmask=randmask
        )
        self.bijection = _wrap(flow)


@FLOWS.register(
    "nsf", help="neural spline flow (zuko): rational-quadratic splines, autoregressive or coupling"
)
class NSF(Flow):
    """zuko's neural spline flow on vectors of shape ``(D,)`` (splines act on [-5, 5], identity outside).

    Every spline layer maps the box ``[-5, 5]^D`` onto itself and is the identity outside it, so the flow
    leaves data outside the box untouched: ``domain_bound = 5``, and the first layer warns once when a
    training batch leaves the box (standardise the data, :func:`symgen.flows.standardized`).

    Arguments:
        event_shape: ``(D,)``.
        transforms: number of spline transformations.
        hidden_features: hidden widths of each conditioner.
        bins: spline bins.
        passes: ``None`` for fully autoregressive, 2 for coupling (fast sampling).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        transforms: int = 3,
        hidden_features: Sequence[int] = (64, 64),
        bins: int = 8,
        passes: int | None = None,
    ) -> None:
        super().__init__(event_shape)
        d = _features(self.event_shape, "nsf")
        flow = zuko.flows.NSF(
            d, transforms=transforms, hidden_features=list(hidden_features), bins=bins, passes=passes
        )
        self.domain_bound = _spline_bound()
        layers = list(_wrap(flow).layers)
        layers[0] = BoundedZukoLayer(layers[0].transform, self.domain_bound, "nsf")
        self.bijection = Chain(*layers)


@FLOWS.register("maf", help="masked autoregressive flow (zuko): affine autoregressive transforms")
class MAF(Flow):
    """zuko's MAF on vectors of shape ``(D,)`` (density in one pass, sampling in D passes).

    Arguments:
        event_shape: ``(D,)``.
        transforms: number of autoregressive transformations.
        hidden_features: hidden widths of each masked MLP.
        randperm: random instead of alternating orders.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        transforms: int = 3,
        hidden_features: Sequence[int] = (64, 64),
        randperm: bool = False,
    ) -> None:
        super().__init__(event_shape)
        d = _features(self.event_shape, "maf")
        flow = zuko.flows.MAF(
            d, transforms=transforms, hidden_features=list(hidden_features), randperm=randperm
        )
        self.bijection = _wrap(flow)


@FLOWS.register("glow_vector", help="fully connected Glow (LFBM latent prior): actnorm, LU linear, coupling")
class GlowVector(Flow):
    """Fully connected Glow on vectors of shape ``(D,)``, ``D >= 2`` (the LFBM prior).

    Each of ``depth`` steps is, data to latent: ActNorm, LU invertible linear, coupling whose MLP conditioner
    has ``hidden_layers`` layers of ``width`` units.

    Arguments:
        event_shape: ``(D,)``.
        depth: steps of flow (5 in the LFBM paper).
        width: hidden units of the conditioner MLPs.
        hidden_layers: hidden layers of the conditioner MLPs.
        coupling: ``"affine"`` or ``"additive"``.
        scale_map: ``"sigmoid"`` (Glow/LFBM, :math:`\\sigma(h + 2)`) or ``"softclamp"``.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        depth: int = 5,
        width: int = 64,
        hidden_layers: int = 2,
        coupling: str = "affine",
        scale_map: str = "sigmoid",
    ) -> None:
        super().__init__(event_shape)
        d = _features(self.event_shape, "glow_vector")
        if d < 2:
            raise ValueError(
                f"glow_vector needs D >= 2 to split features for coupling, got event_shape {(d,)}"
            )
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive int, got {depth!r}")
        check_coupling_kind(coupling, scale_map, 1.0)
        steps = []
        for _ in range(depth):
            net = lambda i, o: zuko_mlp(i, o, width, hidden_layers)  # noqa: E731
            steps += [ActNorm(d), InvertibleLinear(d), ChannelCoupling(d, net, coupling, scale_map)]
        self.bijection = Chain(*steps)
