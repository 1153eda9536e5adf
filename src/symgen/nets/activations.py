r"""Pointwise activations by name, including LipSwish.

``LipSwish(x) = x * sigmoid(x) / 1.1`` is the 1-Lipschitz rescaling of Swish (Chen et al., 2019,
"Residual Flows", Sec. 4; the NT-EBM paper's Appendix A.3 uses it in every energy-network layer):
``sup_x |d/dx (x sigmoid(x))| ~= 1.0998``, so dividing by 1.1 bounds the slope by 1.

Names accepted by :func:`make_activation` (:data:`ACTIVATIONS`): ``"lipswish"``, ``"swish"`` / ``"silu"``
(``x * sigmoid(x)``, Ramachandran et al., 2017), ``"lrelu"`` (LeakyReLU, slope 0.2), ``"gelu"``,
``"relu"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["LipSwish", "ACTIVATIONS", "make_activation"]


class LipSwish(nn.Module):
    r"""``x * sigmoid(x) / 1.1``: Swish scaled to be 1-Lipschitz (Chen et al., 2019; NT-EBM App. A.3)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x) / 1.1


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "lipswish": LipSwish,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "lrelu": lambda: nn.LeakyReLU(0.2),
    "gelu": nn.GELU,
    "relu": nn.ReLU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()
