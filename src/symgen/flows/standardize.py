r"""Input standardisation for vector flows: a fixed affine map fitted to data, with its log-determinant.

A flow's layers are tuned to inputs of unit scale (spline flows act only on :math:`[-5, 5]^D`, coupling
networks see raw coordinates), so data at another scale or offset train badly. :class:`Standardize` maps
data to latent by

.. math:: z = (x - \mu) / \sigma, \qquad \log|\det \partial z/\partial x| = -\textstyle\sum_d \log\sigma_d,

with the per-feature mean :math:`\mu` and standard deviation :math:`\sigma` of a data batch, stored as
buffers (saved in ``state_dict``, not trained). :func:`standardized` prepends it to any vector flow; since
the log-determinant is part of the chain, ``log_prob`` stays the density of the raw data:
:math:`\log p(x) = \log p_\text{inner}((x - \mu)/\sigma) - \sum_d \log\sigma_d`.

Initialisation follows ActNorm (:class:`symgen.flows.ActNorm`): the statistics are fitted on the first
data-to-latent pass in training mode, or explicitly by :meth:`Flow.initialize` / :meth:`Standardize.fit`;
eval mode and loaded checkpoints never re-fit.
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import Tensor

from symgen.flows.base import Bijection, Chain, DataDependentInit, Flow, ladj_dtype

__all__ = ["Standardize", "Standardized", "standardized"]


class Standardize(Bijection, DataDependentInit):
    r"""Per-feature affine normalisation :math:`z = (x - \mu)/\sigma` with statistics fitted to data.

    Buffers ``loc`` (:math:`\mu`), ``scale`` (:math:`\sigma`) and ``initialized``. Until fitted the map is
    the identity. Features whose standard deviation is below ``min_std`` (e.g. constant in the batch) are
    only centred (:math:`\sigma = 1`), so they are not blown up.

    Arguments:
        features: size ``D`` of the vectors ``(B, D)``.
        min_std: smallest standard deviation that is divided out.
    """

    def __init__(self, features: int, min_std: float = 1e-6) -> None:
        super().__init__()
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive int, got {features!r}")
        if not min_std > 0:
            raise ValueError(f"min_std must be > 0, got {min_std!r}")
        self.min_std = float(min_std)
        self.register_buffer("loc", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        self.register_buffer("initialized", torch.tensor(False))

    def reset_initialization(self) -> None:
        self.initialized.fill_(False)

    @torch.no_grad()
    def fit(self, x: Tensor, all_ranks: bool = False) -> None:
        """Set ``loc``/``scale`` to the per-feature mean and standard deviation of ``x``, shape ``(B, D)``.

        With ``all_ranks`` and an initialised ``torch.distributed`` process group, the moments are pooled
        over every rank's batch (every rank must call it), so all ranks hold the same statistics.
        """
        if x.dim() != 2 or x.shape[1] != self.loc.numel():
            raise ValueError(f"x must have shape (B, {self.loc.numel()}), got {tuple(x.shape)}")
        xd = x.detach().double()
        if all_ranks and torch_dist.is_available() and torch_dist.is_initialized():
            moments = torch.cat([xd.new_tensor([xd.shape[0]]), xd.sum(0), xd.square().sum(0)])
            torch_dist.all_reduce(moments)
            n, d = moments[0], self.loc.numel()
            mean = moments[1 : 1 + d] / n
            var = (moments[1 + d :] / n - mean.square()).clamp_min(0.0)
        else:
            n, mean, var = xd.new_tensor(xd.shape[0]), xd.mean(0), xd.var(0, correction=0)
        if int(n) < 2:
            raise ValueError(
                "standardisation needs a batch of at least 2 vectors to estimate a scale, "
                f"got {int(n)} (use a larger batch)"
            )
        if not bool(torch.isfinite(mean).all() & torch.isfinite(var).all()):
            raise ValueError("standardisation got a batch with non-finite values")
        std = var.sqrt()
        self.loc.copy_(mean)
        self.scale.copy_(torch.where(std >= self.min_std, std, torch.ones_like(std)))
        self.initialized.fill_(True)

    def _log_scale_sum(self, t: Tensor) -> Tensor:
        return self.scale.to(ladj_dtype(t.dtype)).log().sum()

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.fit(x)
        z = (x - self.loc) / self.scale
        return z, (-self._log_scale_sum(x)).expand(x.shape[0])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z * self.scale + self.loc
        return x, self._log_scale_sum(z).expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"{self.loc.numel()}, min_std={self.min_std:g}"


class Standardized(Flow):
    r"""A vector flow with :class:`Standardize` in front: ``Chain(Standardize(D), flow.bijection)``.

    The density is that of the raw data (the standardisation's log-determinant is included). The wrapped
    flow's parameters and buffers are shared, not copied; ``standardizer`` and ``inner`` expose the two
    parts. ``domain_bound`` is the wrapped flow's, and applies to the standardised input.

    Arguments:
        flow: a symgen vector flow, ``event_shape == (D,)``.
        min_std: see :class:`Standardize`.
    """

    def __init__(self, flow: Flow, min_std: float = 1e-6) -> None:
        if not isinstance(flow, Flow):
            raise TypeError(f"flow must be a symgen.flows.Flow, got {type(flow).__name__}")
        if len(flow.event_shape) != 1:
            raise ValueError(
                f"flow must be a vector flow with event_shape (D,) to be standardised, "
                f"got event_shape {tuple(flow.event_shape)}"
            )
        super().__init__(flow.event_shape)
        self.check_finite = flow.check_finite
        self.domain_bound = flow.domain_bound
        self.inner_name = type(flow).__name__
        self.bijection = Chain(Standardize(int(flow.event_shape[0]), min_std), flow.bijection)
        self.to(dtype=flow.dtype, device=flow.device)

    @property
    def standardizer(self) -> Standardize:
        """The :class:`Standardize` layer (data side of the chain)."""
        return self.bijection.layers[0]  # type: ignore[return-value]

    @property
    def inner(self) -> Bijection:
        """The wrapped flow's bijection (acts on standardised data)."""
        return self.bijection.layers[1]  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"inner={self.inner_name}"


def standardized(flow: Flow, min_std: float = 1e-6) -> Standardized:
    """``flow`` with its input standardised (:class:`Standardized`); fit by ``flow.initialize(batch)``."""
    return Standardized(flow, min_std)
