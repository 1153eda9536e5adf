"""Normalizing flows behind one contract: ``flow()`` is a torch ``Distribution`` that exposes the bijection.

>>> from symgen.flows import build_flow
>>> flow = build_flow("glow", event_shape=(1, 8, 8), levels=2, depth=2, width=16)
>>> dist = flow()
>>> x = dist.sample((4,))
>>> dist.log_prob(x).shape
torch.Size([4])

Registered flows (``symgen.registry.FLOWS``): ``realnvp``, ``nsf``, ``maf`` (zuko vector flows),
``glow_vector`` (LFBM prior), ``glow`` and ``realnvp_image`` (image flows). ``standardized(flow)`` puts a
data-fitted affine normalisation in front of a vector flow; ``nsf`` warns (``OutOfDomainWarning``) when
training data leave the box its splines act on. See docs/flows.md.
"""

from symgen.flows.base import (
    Bijection,
    Chain,
    Flow,
    FlowDistribution,
    NonFiniteError,
    standard_normal_log_prob,
    unchecked,
)
from symgen.flows.build import build_flow, flow_hyperparameters
from symgen.flows.coupling import (
    ChannelCoupling,
    MaskedCoupling,
    checkerboard_mask,
    conv_conditioner,
    soft_clamp,
)
from symgen.flows.dequant import LogitTransform, bits_per_dim, dequantize, quantize
from symgen.flows.domain import OutOfDomainWarning, warn_outside_domain
from symgen.flows.glow import Glow, GlowStep
from symgen.flows.layers import ActNorm, InvertibleLinear, Permute
from symgen.flows.multiscale import MultiScale, SplitPrior, Squeeze
from symgen.flows.realnvp import RealNVPImage
from symgen.flows.standardize import Standardize, Standardized, standardized
from symgen.flows.vector import MAF, NSF, GlowVector, RealNVP

__all__ = [
    "ActNorm",
    "Bijection",
    "Chain",
    "ChannelCoupling",
    "Flow",
    "FlowDistribution",
    "Glow",
    "GlowStep",
    "GlowVector",
    "InvertibleLinear",
    "LogitTransform",
    "MAF",
    "MaskedCoupling",
    "MultiScale",
    "NSF",
    "NonFiniteError",
    "OutOfDomainWarning",
    "Permute",
    "RealNVP",
    "RealNVPImage",
    "SplitPrior",
    "Squeeze",
    "Standardize",
    "Standardized",
    "bits_per_dim",
    "build_flow",
    "checkerboard_mask",
    "conv_conditioner",
    "dequantize",
    "flow_hyperparameters",
    "quantize",
    "soft_clamp",
    "standard_normal_log_prob",
    "standardized",
    "warn_outside_domain",
    "unchecked",
]
