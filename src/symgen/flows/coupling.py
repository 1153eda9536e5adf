r"""Coupling layers with bounded scales, and their conditioner networks.

Affine coupling (Dinh et al., "Density estimation using Real NVP", 2017; Eqs. (2.28)-(2.29) of the
dissertation), written in the data-to-latent direction with the Glow convention (Table 1 of Kingma &
Dhariwal 2018):

.. math:: z_a = x_a,\qquad z_b = (x_b + t(x_a)) \odot \sigma(x_a),\qquad
          \log|\det| = \textstyle\sum \log \sigma(x_a),

and additive coupling (NICE) :math:`z_b = x_b + t(x_a)`, :math:`\log|\det| = 0`. The scale is always bounded:

* ``"sigmoid"``: :math:`\sigma = \mathrm{sigmoid}(h + 2) \in (0, 1)` (Glow, and the LFBM prior);
* ``"softclamp"``: :math:`\log \sigma = c \tanh(h / c) \in (-c, c)` (RealNVP's tanh-bounded scale).

:class:`ChannelCoupling` splits dimension 1 (features or channels) in two halves; :class:`MaskedCoupling`
uses a fixed binary mask (RealNVP's checkerboard). Conditioners end in a zero-initialised layer so every
coupling starts as the identity. zuko's couplings only act on vectors with an unbounded-below exponential
scale and no image conditioners, so the couplings are hand-written (vector flows use zuko's MLP as
conditioner).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symgen.flows.base import Bijection, ladj_dtype

__all__ = [
    "COUPLINGS",
    "SCALE_MAPS",
    "ChannelCoupling",
    "ConvConditioner",
    "MaskedCoupling",
    "check_coupling_kind",
    "checkerboard_mask",
    "conv_conditioner",
    "log_scale",
    "soft_clamp",
]

COUPLINGS = ("affine", "additive")
SCALE_MAPS = ("sigmoid", "softclamp")

NetFactory = Callable[[int, int], nn.Module]


def soft_clamp(h: Tensor, bound: float) -> Tensor:
    r"""Smooth clamp to :math:`(-b, b)`: :math:`b \tanh(h / b)` (identity near zero)."""
    return bound * torch.tanh(h / bound)


def log_scale(h: Tensor, scale_map: str, clamp: float) -> Tensor:
    """Bounded log-scale from raw conditioner output ``h`` (see the module docstring for the maps)."""
    if scale_map == "sigmoid":
        return F.logsigmoid(h + 2.0)
    return soft_clamp(h, clamp)


def check_coupling_kind(coupling: str, scale_map: str, clamp: float) -> None:
    """Raise ``ValueError`` for an unknown coupling type or scale map, or a non-positive clamp."""
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    if scale_map not in SCALE_MAPS:
        raise ValueError(f"scale_map must be one of {SCALE_MAPS}, got {scale_map!r}")
    if not clamp > 0:
        raise ValueError(f"clamp must be > 0, got {clamp}")


def _sum_events(t: Tensor) -> Tensor:
    return t.flatten(1).sum(1, dtype=ladj_dtype(t.dtype))


class ConvConditioner(nn.Sequential):
    """Glow's coupling network: 3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv.

    The hidden activations are computed in channels-last memory format (several times faster for oneDNN
    convolutions on CPU, neutral on GPU); input and output are ordinary contiguous tensors.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        last = nn.Conv2d(width, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 1),
            nn.ReLU(inplace=True),
            last,
        )

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


def conv_conditioner(in_channels: int, out_channels: int, width: int) -> ConvConditioner:
    """A :class:`ConvConditioner` (the ``make_net`` of image couplings)."""
    return ConvConditioner(in_channels, out_channels, width)


class ChannelCoupling(Bijection):
    """Coupling on the two halves of dimension 1 (``swap`` picks which half is transformed).

    Arguments:
        num_features: size of dimension 1 (>= 2).
        make_net: ``make_net(in_features, out_features)`` builds the conditioner.
        coupling: ``"affine"`` or ``"additive"``.
        scale_map: ``"sigmoid"`` or ``"softclamp"`` (affine only).
        clamp: bound of the soft clamp.
        swap: transform the first half instead of the second.
    """

    def __init__(
        self,
        num_features: int,
        make_net: NetFactory,
        coupling: str = "affine",
        scale_map: str = "sigmoid",
        clamp: float = 2.0,
        swap: bool = False,
    ) -> None:
        super().__init__()
        check_coupling_kind(coupling, scale_map, clamp)
        if num_features < 2:
            raise ValueError(f"a channel coupling needs num_features >= 2, got {num_features}")
        first = num_features - num_features // 2
        self.sizes = (first, num_features - first)
        self.swap = swap
        self.coupling, self.scale_map, self.clamp = coupling, scale_map, float(clamp)
        n_in, n_out = (self.sizes[1], self.sizes[0]) if swap else self.sizes
        self.n_out = n_out
        self.net = make_net(n_in, n_out * (2 if coupling == "affine" else 1))

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = torch.split(x, self.sizes, dim=1)
        return (b, a) if self.swap else (a, b)

    def _merge(self, keep: Tensor, moved: Tensor) -> Tensor:
        return torch.cat((moved, keep) if self.swap else (keep, moved), dim=1)

    def _params(self, keep: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.net(keep)
        if self.coupling == "additive":
            return h, None
        shift, raw = h.split(self.n_out, dim=1)
        return shift, log_scale(raw, self.scale_map, self.clamp)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        keep, xb = self._split(x)
        shift, logs = self._params(keep)
        if logs is None:
            return self._merge(keep, xb + shift), x.new_zeros(x.shape[0], dtype=ladj_dtype(x.dtype))
        return self._merge(keep, (xb + shift) * logs.exp()), _sum_events(logs)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        keep, zb = self._split(z)
        shift, logs = self._params(keep)
        if logs is None:
            return self._merge(keep, zb - shift), z.new_zeros(z.shape[0], dtype=ladj_dtype(z.dtype))
        return self._merge(keep, zb * torch.exp(-logs) - shift), -_sum_events(logs)

    def extra_repr(self) -> str:
        return f"{self.coupling}, scale_map={self.scale_map}, sizes={self.sizes}, swap={self.swap}"


def checkerboard_mask(height: int, width: int, parity: int = 0) -> Tensor:
    """``(1, H, W)`` float mask with ones where ``(i + j) % 2 == parity`` (RealNVP's checkerboard)."""
    i = torch.arange(height)[:, None]
    j = torch.arange(width)[None, :]
    return ((i + j) % 2 == parity).float()[None]


class MaskedCoupling(Bijection):
    r"""Coupling with a fixed binary mask :math:`m` (ones are kept): RealNVP's masked form
    :math:`z = m \odot x + (1 - m) \odot ((x + t(m \odot x)) \odot \sigma(m \odot x))`.

    Arguments:
        mask: tensor broadcastable to one example (e.g. ``(1, H, W)`` from :func:`checkerboard_mask`).
        num_channels: channels of the input (conditioner in/out width).
        make_net, coupling, scale_map, clamp: as in :class:`ChannelCoupling`.
    """

    def __init__(
        self,
        mask: Tensor,
        num_channels: int,
        make_net: NetFactory,
        coupling: str = "affine",
        scale_map: str = "softclamp",
        clamp: float = 2.0,
    ) -> None:
        super().__init__()
        check_coupling_kind(coupling, scale_map, clamp)
        self.register_buffer("mask", mask.float())
        self.coupling, self.scale_map, self.clamp = coupling, scale_map, float(clamp)
        self.channels = num_channels
        self.net = make_net(num_channels, num_channels * (2 if coupling == "affine" else 1))

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        m = self.mask.to(x.dtype)
        h = self.net(x * m)
        if self.coupling == "additive":
            return h * (1 - m), None
        shift, raw = h.split(self.channels, dim=1)
        return shift * (1 - m), log_scale(raw, self.scale_map, self.clamp) * (1 - m)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shift, logs = self._params(x)
        if logs is None:
            return x + shift, x.new_zeros(x.shape[0], dtype=ladj_dtype(x.dtype))
        return (x + shift) * logs.exp(), _sum_events(logs)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        shift, logs = self._params(z)
        if logs is None:
            return z - shift, z.new_zeros(z.shape[0], dtype=ladj_dtype(z.dtype))
        return z * torch.exp(-logs) - shift, -_sum_events(logs)

    def extra_repr(self) -> str:
        return f"{self.coupling}, scale_map={self.scale_map}, mask={tuple(self.mask.shape)}"
