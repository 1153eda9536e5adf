r"""Glow for images (Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", 2018).

``levels`` levels of: squeeze, ``depth`` steps of flow (ActNorm -> invertible 1x1 conv -> coupling, Table 1
of the paper), then (except at the last level) factor out half of the channels with a learned conditional
Gaussian prior or a standard one (:mod:`symgen.flows.multiscale`). The latent has the image's shape and is
:math:`\mathcal{N}(0, I)`.

NT-EBM's backbone (appendix A.3 of the NT-EBM paper: ``flow_permutation=2`` i.e. 1x1 conv, ``flow_coupling=0``
i.e. additive, 3 levels, depth 8-32, width 128-512, no learned prior) is
``Glow(event_shape, levels=3, depth=8, width=128, coupling="additive", learn_prior=False)``.
normflows has a Glow but with a different distribution interface (list-valued latents, a per-level base), so
the model is assembled here from the hand-written layers.
"""

from __future__ import annotations

from collections.abc import Sequence

from symgen.flows.base import Bijection, Chain, Flow
from symgen.flows.coupling import ChannelCoupling, check_coupling_kind, conv_conditioner
from symgen.flows.dequant import LogitTransform
from symgen.flows.layers import ActNorm, InvertibleLinear, Permute
from symgen.flows.multiscale import MultiScale, SplitPrior
from symgen.registry import FLOWS

__all__ = ["PERMUTATIONS", "PREPROCESS", "Glow", "GlowStep", "check_image_shape", "preprocess_layer"]

PERMUTATIONS = ("invconv", "reverse", "shuffle")
PREPROCESS = ("none", "logit")


def check_image_shape(event_shape: Sequence[int], squeezes: int, name: str) -> None:
    """Raise ``ValueError`` unless ``event_shape`` is ``(C, H, W)``, ``H, W`` divisible by ``2**squeezes``."""
    if len(event_shape) != 3:
        raise ValueError(f"{name} needs event_shape (C, H, W), got {tuple(event_shape)}")
    c, h, w = event_shape
    f = 2**squeezes
    if h % f or w % f:
        raise ValueError(
            f"{name}: height and width of event_shape {tuple(event_shape)} must be divisible by {f} "
            f"for {squeezes} squeeze(s); pad the images (e.g. 28x28 -> 32x32) or use fewer levels"
        )


def preprocess_layer(preprocess: str, logit_alpha: float) -> list[Bijection]:
    """The optional data-side preprocessing layer: ``[]`` or ``[LogitTransform(logit_alpha)]``."""
    if preprocess not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
    return [LogitTransform(logit_alpha)] if preprocess == "logit" else []


class GlowStep(Chain):
    """One step of flow, data to latent: ActNorm, channel mixing (1x1 conv or permutation), coupling."""

    def __init__(self, channels: int, width: int, coupling: str, permutation: str, scale_map: str) -> None:
        mixer = InvertibleLinear(channels) if permutation == "invconv" else Permute(channels, permutation)
        coupling_layer = ChannelCoupling(
            channels, lambda i, o: conv_conditioner(i, o, width), coupling=coupling, scale_map=scale_map
        )
        super().__init__(ActNorm(channels), mixer, coupling_layer)


@FLOWS.register("glow", help="Glow image flow: multi-scale, actnorm, 1x1 conv (LU), affine/additive coupling")
class Glow(Flow):
    """Multi-scale Glow on images of shape ``(C, H, W)``.

    Arguments:
        event_shape: ``(C, H, W)``; ``H`` and ``W`` divisible by ``2**levels``.
        levels: number of levels (squeezes).
        depth: steps of flow per level.
        width: hidden channels of the coupling networks.
        coupling: ``"affine"`` (Glow) or ``"additive"`` (NICE; NT-EBM).
        permutation: ``"invconv"`` (LU 1x1 conv), ``"reverse"`` or ``"shuffle"``.
        learn_prior: learned conditional Gaussian for factored-out channels (else standard normal).
        scale_map: bounded affine scale, ``"sigmoid"`` (Glow) or ``"softclamp"``.
        preprocess: ``"none"`` or ``"logit"`` (RealNVP's logit transform as the first layer).
        logit_alpha: the logit transform's boundary margin.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        levels: int = 3,
        depth: int = 8,
        width: int = 128,
        coupling: str = "affine",
        permutation: str = "invconv",
        learn_prior: bool = True,
        scale_map: str = "sigmoid",
        preprocess: str = "none",
        logit_alpha: float = 0.05,
    ) -> None:
        super().__init__(event_shape)
        for key, value in (("levels", levels), ("depth", depth), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if permutation not in PERMUTATIONS:
            raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {permutation!r}")
        check_coupling_kind(coupling, scale_map, 1.0)
        check_image_shape(self.event_shape, levels, "glow")
        self.hparams = dict(
            levels=levels, depth=depth, width=width, coupling=coupling, permutation=permutation
        )
        pre = preprocess_layer(preprocess, logit_alpha)
        core = self._level(
            self.event_shape[0], levels, depth, width, coupling, permutation, learn_prior, scale_map
        )
        self.bijection = Chain(*pre, core)

    @staticmethod
    def _level(
        channels: int,
        levels: int,
        depth: int,
        width: int,
        coupling: str,
        permutation: str,
        learn_prior: bool,
        scale_map: str,
    ) -> MultiScale:
        c = 4 * channels
        steps = Chain(*(GlowStep(c, width, coupling, permutation, scale_map) for _ in range(depth)))
        if levels == 1:
            return MultiScale(None, True, steps)
        keep = c // 2
        inner = Glow._level(keep, levels - 1, depth, width, coupling, permutation, learn_prior, scale_map)
        prior = SplitPrior(keep, c - keep) if learn_prior else None
        return MultiScale(None, True, steps, inner=inner, keep_channels=keep, prior=prior)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.hparams.items())
