r"""Discrete images as continuous data: uniform dequantisation, logit preprocessing, bits per dimension.

Convention: images live in :math:`[-1, 1]` (the scaling of all four papers). With :math:`K = 2^{n}` levels
(``n_bits``), level :math:`k` owns the bin :math:`[-1 + 2k/K,\ -1 + 2(k+1)/K)` of width :math:`2/K`.
Uniform dequantisation draws :math:`y = -1 + 2(k + u)/K`, :math:`u \sim U(0, 1)` (Theis et al. 2016; Glow's
``n_bits_x``). A density :math:`p` of :math:`y` then lower-bounds the discrete log-likelihood by Jensen:
:math:`\log P(k) \ge \mathbb{E}_u[\log p(y)] + D \log(2/K)`, so in bits per dimension

.. math:: \mathrm{bpd} = -\frac{\log p(y)}{D \ln 2} + n - 1.

(A uniform density on :math:`[-1, 1]^D` gives exactly ``n_bits``.) These conversions are a few lines and
specific to the :math:`[-1, 1]` convention, so they are hand-written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from symgen.flows.base import Bijection, ladj_dtype

__all__ = ["LogitTransform", "bits_per_dim", "dequantize", "quantize", "to_levels"]


def _levels(n_bits: int) -> int:
    if not isinstance(n_bits, int) or not 1 <= n_bits <= 16:
        raise ValueError(f"n_bits must be an int in [1, 16], got {n_bits!r}")
    return 2**n_bits


def to_levels(x: Tensor, n_bits: int = 8) -> Tensor:
    """Integer level :math:`k \\in \\{0, ..., 2^n - 1\\}` (bin index) of each value of ``x`` in [-1, 1]."""
    k = _levels(n_bits)
    return torch.floor((x + 1) * (k / 2)).clamp_(0, k - 1)


def dequantize(x: Tensor, n_bits: int = 8, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantisation of ``x`` in ``[-1, 1]``: each value is replaced by a uniform draw in its bin.

    Values are first binned to ``n_bits`` (so 8-bit data can be modelled at 5 bits, as Glow does for CelebA);
    the result lies in ``[-1, 1)`` and has the dtype/device of ``x``.
    """
    k = _levels(n_bits)
    if generator is None:
        u = torch.rand_like(x)
    else:
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
    return (to_levels(x, n_bits) + u) * (2.0 / k) - 1.0


def quantize(y: Tensor, n_bits: int = 8) -> Tensor:
    """Map continuous values to the discrete grid in ``[-1, 1]``: level :math:`k \\mapsto -1+2k/(2^n-1)`."""
    k = _levels(n_bits)
    return to_levels(y, n_bits) * (2.0 / (k - 1)) - 1.0


def bits_per_dim(log_prob_x: Tensor, event_shape: Sequence[int] | int, n_bits: int = 8) -> Tensor:
    r"""Bits per dimension of discrete data from the log-density of its dequantised ``[-1, 1]`` version.

    :math:`\mathrm{bpd} = -\log p(y) / (D \ln 2) + n - 1` with :math:`D` = ``prod(event_shape)`` (see the
    module docstring); elementwise over ``log_prob_x`` (nats).
    """
    k = _levels(n_bits)
    d = event_shape if isinstance(event_shape, int) else math.prod(event_shape)
    if d <= 0:
        raise ValueError(f"event_shape must describe at least one dimension, got {event_shape!r}")
    return -log_prob_x / (d * math.log(2.0)) + math.log2(k / 2.0)


class LogitTransform(Bijection):
    r"""RealNVP's logit preprocessing as the first (data-side) layer of a flow.

    Data to latent: :math:`p = \alpha + (1 - 2\alpha)(x + 1)/2`, :math:`s = \log p - \log(1 - p)`, with
    :math:`\log|\det| = \sum [\log((1 - 2\alpha)/2) - \log p - \log(1 - p)]` (Dinh et al. 2017, Sec. 4.1), so
    ``log_prob`` stays a density of :math:`x \in (-1, 1)` and :func:`bits_per_dim` applies unchanged.
    """

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def _ladj(self, p: Tensor) -> Tensor:
        acc = ladj_dtype(p.dtype)
        per = math.log((1 - 2 * self.alpha) / 2) - torch.log(p) - torch.log1p(-p)
        return per.flatten(1).sum(1, dtype=acc)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * (x + 1) / 2
        return torch.log(p) - torch.log1p(-p), self._ladj(p)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        p = torch.sigmoid(z)
        return (p - self.alpha) / (1 - 2 * self.alpha) * 2 - 1, -self._ladj(p)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
