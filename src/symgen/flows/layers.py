r"""Channel-wise layers of Glow: activation normalisation, LU-parametrised invertible linear map, permutation.

All layers act on dimension 1 (features of ``(B, D)`` vectors, channels of ``(B, C, H, W)`` images), so one
class serves the vector Glow of the LFBM prior and the image Glow (where the linear map is the invertible
1x1 convolution). Equations follow Table 1 of Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1
Convolutions" (2018, arXiv:1807.03039); written in the data-to-latent direction:

* ActNorm: :math:`z = (x - b) \odot e^{-s}`, :math:`\log|\det| = -H W \sum_c s_c`;
* invertible linear / 1x1 conv: :math:`z = W x`, :math:`\log|\det| = H W \log|\det W|` (Eq. (2.30) of the
  dissertation), with :math:`W = P L (U + \mathrm{diag}(\mathrm{sign}\, e^{\log s}))`, so
  :math:`\log|\det W| = \sum \log s`, no ``slogdet``.

zuko offers neither a module with data-dependent ActNorm initialisation nor an LU linear map that also acts
as a 1x1 convolution, so these are hand-written.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symgen.flows.base import Bijection, DataDependentInit, ladj_dtype

__all__ = ["ActNorm", "InvertibleLinear", "Permute", "spatial_size"]


def spatial_size(x: Tensor) -> int:
    """Number of positions sharing one channel parameter: ``H*W`` for images, 1 for vectors."""
    return math.prod(x.shape[2:])


def _per_channel(p: Tensor, x: Tensor) -> Tensor:
    return p.view(1, -1, *([1] * (x.dim() - 2)))


class ActNorm(Bijection, DataDependentInit):
    r"""Per-channel affine normalisation with data-dependent initialisation (Glow, Sec. 3.1).

    Data to latent: :math:`z = (x - b) e^{-s}`. On the first ``inverse`` call in training mode, :math:`b` and
    :math:`s` are set so that the batch's output has zero mean and unit variance per channel; the buffer
    ``initialized`` records it (saved in ``state_dict``). In eval mode no initialisation happens.

    Arguments:
        num_features: number of channels (dimension 1 of the input).
        min_std: floor on the batch standard deviation used at initialisation (guards constant channels).
    """

    def __init__(self, num_features: int, min_std: float = 1e-3) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.loc = nn.Parameter(torch.zeros(num_features))
        self.log_scale = nn.Parameter(torch.zeros(num_features))
        self.min_std = float(min_std)
        self.register_buffer("initialized", torch.tensor(False))

    def reset_initialization(self) -> None:
        self.initialized.fill_(False)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set ``loc``/``log_scale`` to the per-channel mean and log standard deviation of ``x``."""
        dims = [0, *range(2, x.dim())]
        if x.numel() // x.shape[1] < 2:
            raise ValueError(
                "ActNorm data-dependent initialisation needs at least 2 values per channel; "
                f"got a batch of shape {tuple(x.shape)} (use a larger batch or flow.initialize(batch))"
            )
        xd = x.to(ladj_dtype(x.dtype))
        mean = xd.mean(dims)
        std = xd.std(dims, correction=0).clamp_min(self.min_std)
        self.loc.copy_(mean)
        self.log_scale.copy_(std.log())
        self.initialized.fill_(True)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        z = (x - _per_channel(self.loc, x)) * _per_channel(torch.exp(-self.log_scale), x)
        ladj = -self.log_scale.sum(dtype=ladj_dtype(x.dtype)) * spatial_size(x)
        return z, ladj.expand(x.shape[0])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z * _per_channel(torch.exp(self.log_scale), z) + _per_channel(self.loc, z)
        ladj = self.log_scale.sum(dtype=ladj_dtype(z.dtype)) * spatial_size(z)
        return x, ladj.expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"{self.loc.numel()}"


class InvertibleLinear(Bijection):
    r"""Invertible linear map on dimension 1 with an LU parametrisation (Glow, Sec. 3.2).

    :math:`W = P L (U + \mathrm{diag}(\sigma \odot e^{\log s}))` with a fixed permutation :math:`P`, unit
    lower-triangular :math:`L`, strictly upper-triangular :math:`U` and fixed signs :math:`\sigma`;
    initialised
    at a random rotation. Data to latent: :math:`z = W x` (a 1x1 convolution for images).

    When no gradient can flow to the parameters (``torch.no_grad()`` or frozen parameters), the composed
    :math:`W` and :math:`W^{-1}` are cached until a parameter changes.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        c = num_features
        q = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(s.abs().log().float())
        self._cache: dict[bool, tuple[tuple, Tensor]] = {}

    def _factors(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.log_s.numel(), dtype=dtype, device=self.log_s.device)
        lower = self.lower.to(dtype) * self.lower_mask.to(dtype) + eye
        upper = self.upper.to(dtype) * self.lower_mask.t().to(dtype) + torch.diag(
            self.sign_s.to(dtype) * torch.exp(self.log_s.to(dtype))
        )
        return lower, upper

    def _compose(self, inverse: bool) -> Tensor:
        if not inverse:
            lower, upper = self._factors(self.log_s.dtype)
            return self.perm @ lower @ upper
        # W^{-1} = U^{-1} L^{-1} P^T by triangular solves, in float64 for an accurate round trip.
        lower, upper = self._factors(torch.float64)
        eye = torch.eye(lower.shape[0], dtype=torch.float64, device=lower.device)
        l_inv = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        u_inv = torch.linalg.solve_triangular(upper, eye, upper=True)
        return (u_inv @ l_inv @ self.perm.t().to(torch.float64)).to(self.log_s.dtype)

    def weight(self, inverse: bool = False) -> Tensor:
        """The matrix :math:`W` (data to latent) or, with ``inverse=True``, :math:`W^{-1}`."""
        params = (self.lower, self.upper, self.log_s)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return self._compose(inverse)
        key = tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in params)
        hit = self._cache.get(inverse)
        if hit is None or hit[0] != key:
            hit = (key, self._compose(inverse))
            self._cache[inverse] = hit
        return hit[1]

    def log_abs_det(self) -> Tensor:
        r""":math:`\log|\det W| = \sum_c \log s_c`."""
        return self.log_s.sum()

    @staticmethod
    def _mix(x: Tensor, w: Tensor) -> Tensor:
        if x.dim() == 2:
            return F.linear(x, w)
        if x.dim() == 4:
            return F.conv2d(x, w[:, :, None, None])
        return torch.einsum("ij,bj...->bi...", w, x)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ladj = self.log_s.sum(dtype=ladj_dtype(x.dtype)) * spatial_size(x)
        return self._mix(x, self.weight(False)), ladj.expand(x.shape[0])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ladj = -self.log_s.sum(dtype=ladj_dtype(z.dtype)) * spatial_size(z)
        return self._mix(z, self.weight(True)), ladj.expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"{self.log_s.numel()}"


class Permute(Bijection):
    """A fixed permutation of dimension 1 (Glow's "reverse" and "shuffle" alternatives to the 1x1 conv)."""

    def __init__(
        self, num_features: int, mode: str = "reverse", generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if mode == "reverse":
            perm = torch.arange(num_features - 1, -1, -1)
        elif mode == "shuffle":
            perm = torch.randperm(num_features, generator=generator)
        else:
            raise ValueError(f"mode must be 'reverse' or 'shuffle', got {mode!r}")
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0], dtype=ladj_dtype(x.dtype))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z[:, self.inv_perm], z.new_zeros(z.shape[0], dtype=ladj_dtype(z.dtype))
