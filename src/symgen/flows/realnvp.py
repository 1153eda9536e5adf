r"""RealNVP for images (Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", 2017, Sec. 3.6).

Each scale but the last: ``couplings`` checkerboard-masked couplings (alternating masks), squeeze,
``couplings``
channel-wise couplings (alternating halves), then half of the channels are factored out with a standard
Gaussian; the last scale applies ``final_couplings`` checkerboard couplings. The affine scale is tanh-bounded
(``"softclamp"``) as in the paper; an optional ActNorm before each coupling stands in for the paper's batch
normalisation (deterministic, batch-size independent at evaluation). Conditioners are the Glow-style conv
nets of :func:`symgen.flows.coupling.conv_conditioner` (the paper used ResNets). Hand-written because zuko
has no image flows.
"""

from __future__ import annotations

from collections.abc import Sequence

from symgen.flows.base import Bijection, Chain, Flow
from symgen.flows.coupling import (
    ChannelCoupling,
    MaskedCoupling,
    check_coupling_kind,
    checkerboard_mask,
    conv_conditioner,
)
from symgen.flows.glow import check_image_shape, preprocess_layer
from symgen.flows.layers import ActNorm
from symgen.flows.multiscale import MultiScale
from symgen.registry import FLOWS

__all__ = ["RealNVPImage"]


@FLOWS.register("realnvp_image", help="RealNVP image flow: checkerboard and channel couplings, multi-scale")
class RealNVPImage(Flow):
    """Multi-scale RealNVP on images of shape ``(C, H, W)``.

    Arguments:
        event_shape: ``(C, H, W)``; ``H`` and ``W`` divisible by ``2**(levels - 1)``.
        levels: number of scales (``levels - 1`` squeezes).
        width: hidden channels of the coupling networks.
        couplings: couplings per mask type in each non-final scale (3 in the paper).
        final_couplings: checkerboard couplings of the last scale (4 in the paper).
        coupling: ``"affine"`` or ``"additive"``.
        scale_map: ``"softclamp"`` (tanh-bounded, the paper's choice) or ``"sigmoid"``.
        clamp: bound of the soft clamp on the log-scale.
        actnorm: ActNorm before each coupling.
        preprocess: ``"none"`` or ``"logit"`` (the paper's logit transform as the first layer).
        logit_alpha: the logit transform's boundary margin (0.05 in the paper).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        levels: int = 2,
        width: int = 64,
        couplings: int = 3,
        final_couplings: int = 4,
        coupling: str = "affine",
        scale_map: str = "softclamp",
        clamp: float = 2.0,
        actnorm: bool = True,
        preprocess: str = "none",
        logit_alpha: float = 0.05,
    ) -> None:
        super().__init__(event_shape)
        for key, value in (("levels", levels), ("width", width), ("couplings", couplings)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if not isinstance(final_couplings, int) or final_couplings < 1:
            raise ValueError(f"final_couplings must be a positive int, got {final_couplings!r}")
        check_coupling_kind(coupling, scale_map, clamp)
        check_image_shape(self.event_shape, levels - 1, "realnvp_image")
        self.kw = dict(width=width, coupling=coupling, scale_map=scale_map, clamp=clamp, actnorm=actnorm)
        c, h, w = self.event_shape
        core = self._level(c, h, w, levels, couplings, final_couplings)
        self.bijection = Chain(*preprocess_layer(preprocess, logit_alpha), core)

    def _with_norm(self, channels: int, layer: Bijection) -> list[Bijection]:
        return [ActNorm(channels), layer] if self.kw["actnorm"] else [layer]

    def _checkerboard(self, c: int, h: int, w: int, n: int) -> Chain:
        kw = self.kw
        layers: list[Bijection] = []
        for i in range(n):
            net = lambda a, b: conv_conditioner(a, b, kw["width"])  # noqa: E731
            mask = checkerboard_mask(h, w, parity=i % 2)
            layer = MaskedCoupling(mask, c, net, kw["coupling"], kw["scale_map"], kw["clamp"])
            layers += self._with_norm(c, layer)
        return Chain(*layers)

    def _channelwise(self, c: int, n: int) -> Chain:
        kw = self.kw
        layers: list[Bijection] = []
        for i in range(n):
            net = lambda a, b: conv_conditioner(a, b, kw["width"])  # noqa: E731
            layer = ChannelCoupling(c, net, kw["coupling"], kw["scale_map"], kw["clamp"], swap=bool(i % 2))
            layers += self._with_norm(c, layer)
        return Chain(*layers)

    def _level(self, c: int, h: int, w: int, levels: int, couplings: int, final_couplings: int) -> MultiScale:
        if levels == 1:
            return MultiScale(self._checkerboard(c, h, w, final_couplings), False, None)
        pre = self._checkerboard(c, h, w, couplings)
        post = self._channelwise(4 * c, couplings)
        keep = 2 * c
        inner = self._level(keep, h // 2, w // 2, levels - 1, couplings, final_couplings)
        return MultiScale(pre, True, post, inner=inner, keep_channels=keep)
