r"""Bounded domains: warn when training data reach where a flow does nothing.

Some flows transform only a box :math:`[-b, b]^D` and are the identity outside it (zuko's spline flows,
``nsf``, with :math:`b = 5`). Maximum likelihood then cannot shape the density out there: it stays the
base :math:`\mathcal{N}(0, I)`, and the fit degrades silently. :func:`warn_outside_domain` turns that into
an :class:`OutOfDomainWarning` naming the flow and the bound; the layer that owns the bound calls it on its
input during training, so the check sees the data after any standardisation (:mod:`symgen.flows.standardize`).
"""

from __future__ import annotations

import warnings

from torch import Tensor

__all__ = ["OutOfDomainWarning", "warn_outside_domain"]


class OutOfDomainWarning(UserWarning):
    """A training batch fell outside the box on which a bounded flow acts (it is the identity there)."""


def warn_outside_domain(x: Tensor, bound: float, flow_name: str) -> bool:
    r"""Warn if some entry of ``x`` lies outside :math:`[-\text{bound}, \text{bound}]`; return whether it did.

    Arguments:
        x: the batch entering the bounded flow, shape ``(B, D)``.
        bound: half-width of the box the flow transforms.
        flow_name: registered name of the flow, quoted in the message.
    """
    mag = x.detach().abs()
    outside = mag > bound
    if not bool(outside.any()):
        return False
    rows = outside.flatten(1).any(dim=1) if x.dim() > 1 else outside
    frac = float(rows.float().mean())
    peak = float(mag.max())
    warnings.warn(
        f"flow '{flow_name}' transforms only inside [-{bound:g}, {bound:g}] and is the identity outside, "
        f"but {frac:.1%} of a training batch lies outside (max |x| = {peak:.3g}); the density there stays "
        "the base N(0, I). Standardise the input (model.standardize=true, or "
        "symgen.flows.standardized(flow)) or rescale the data.",
        OutOfDomainWarning,
        stacklevel=2,
    )
    return True
