r"""Multi-scale RealNVP/Glow architecture: squeeze, factor out half, recurse; the latent has the data shape.

One level, data to latent (Dinh et al. 2017, Sec. 3.6; Kingma & Dhariwal 2018, Fig. 2):

.. math:: h = \mathrm{post}(\mathrm{squeeze}(\mathrm{pre}(x))),\quad (h_a, h_b) = h,\quad
          \epsilon_b = (h_b - \mu(h_a)) / \sigma(h_a),\quad
          z = \mathrm{unsqueeze}([\mathrm{inner}(h_a), \epsilon_b]).

The factored-out half :math:`h_b` gets Glow's learned conditional Gaussian prior
:math:`\mathcal{N}(\mu(h_a), \sigma(h_a)^2)`, *absorbed into the bijection* by standardising it
(:class:`SplitPrior`), or a standard Gaussian (``learn_prior=False``, as NT-EBM trains Glow). The final
unsqueeze is a fixed permutation of latent coordinates, so the whole latent has the data's shape and is
:math:`\mathcal{N}(0, I)`. Neither zuko nor normflows offers a multi-scale flow with this contract, so it is
hand-written.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symgen.flows.base import Bijection, Chain, check_output, ladj_dtype, zero_ladj
from symgen.flows.coupling import soft_clamp

__all__ = ["MultiScale", "SplitPrior", "Squeeze", "squeeze", "unsqueeze"]


def squeeze(x: Tensor) -> Tensor:
    """Space-to-depth: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``."""
    return F.pixel_unshuffle(x, 2)


def unsqueeze(x: Tensor) -> Tensor:
    """Depth-to-space: ``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""
    return F.pixel_shuffle(x, 2)


class Squeeze(Bijection):
    """Space-to-depth reshaping (data to latent), a permutation with zero log-determinant."""

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return squeeze(x), zero_ladj(x)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return unsqueeze(z), zero_ladj(z)


class SplitPrior(nn.Module):
    r"""Glow's learned prior for factored-out channels, as a standardising bijection.

    :math:`\mu, \log\sigma = \mathrm{conv}_{3\times 3}(h_a)` (zero-initialised, so it starts at
    :math:`\mathcal{N}(0, I)`), :math:`\log\sigma` soft-clamped to :math:`(-c, c)`. Data to latent:
    :math:`\epsilon = (h_b - \mu) e^{-\log\sigma}`, :math:`\log|\det| = -\sum \log\sigma`.
    """

    def __init__(self, keep_channels: int, out_channels: int, clamp: float = 5.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(keep_channels, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.out_channels = out_channels
        self.clamp = float(clamp)

    def _params(self, ha: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw = self.conv(ha).split(self.out_channels, dim=1)
        return mean, soft_clamp(raw, self.clamp)

    def standardize(self, ha: Tensor, hb: Tensor) -> tuple[Tensor, Tensor]:
        mean, logs = self._params(ha)
        return (hb - mean) * torch.exp(-logs), -logs.flatten(1).sum(1, dtype=ladj_dtype(hb.dtype))

    def unstandardize(self, ha: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        mean, logs = self._params(ha)
        return eps * torch.exp(logs) + mean, logs.flatten(1).sum(1, dtype=ladj_dtype(eps.dtype))


class MultiScale(Bijection):
    """One level of a multi-scale flow (see the module docstring); ``inner`` is the next level or ``None``.

    Arguments:
        pre: bijection applied before the squeeze (RealNVP's checkerboard couplings), or ``None``.
        squeeze: whether to squeeze 2x2 patches into channels.
        post: bijection applied after the squeeze (Glow's steps, RealNVP's channel couplings), or ``None``.
        inner: the next (coarser) level, applied to the kept half; ``None`` for the last level.
        keep_channels: channels of the kept half (the rest is factored out).
        prior: :class:`SplitPrior` for the factored-out half, or ``None`` for a standard Gaussian.
    """

    def __init__(
        self,
        pre: Bijection | None,
        squeeze: bool,
        post: Bijection | None,
        inner: MultiScale | None = None,
        keep_channels: int = 0,
        prior: SplitPrior | None = None,
    ) -> None:
        super().__init__()
        self.pre = pre if pre is not None else Chain()
        self.post = post if post is not None else Chain()
        self.squeeze = squeeze
        self.inner = inner
        self.keep_channels = keep_channels
        self.prior = prior

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, total = self.pre.inverse(x)
        if self.squeeze:
            h = squeeze(h)
        h, ladj = self.post.inverse(h)
        total = total + ladj
        if self.inner is not None:
            ha, hb = h[:, : self.keep_channels], h[:, self.keep_channels :]
            if self.prior is not None:
                hb, ladj = self.prior.standardize(ha, hb)
                total = total + ladj
                check_output(self.prior, hb, total)
            ha, ladj = self.inner.inverse(ha)
            total = total + ladj
            h = torch.cat((ha, hb), dim=1)
        return (unsqueeze(h) if self.squeeze else h), total

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h = squeeze(z) if self.squeeze else z
        total = zero_ladj(z)
        if self.inner is not None:
            ha, eps = h[:, : self.keep_channels], h[:, self.keep_channels :]
            ha, ladj = self.inner.forward(ha)
            total = total + ladj
            if self.prior is not None:
                eps, ladj = self.prior.unstandardize(ha, eps)
                total = total + ladj
                check_output(self.prior, eps, total)
            h = torch.cat((ha, eps), dim=1)
        h, ladj = self.post.forward(h)
        total = total + ladj
        if self.squeeze:
            h = unsqueeze(h)
        h, ladj = self.pre.forward(h)
        return h, total + ladj
