"""Pixel masks: inpainting holes and the occlusions of training data (Sections 4.3 and 4.6 of the LFBM paper).

This is symgen's one mask module: every mask, in every module that takes one, follows its convention.

Convention (the LFBM paper's :math:`m`): **1 = observed (visible) pixel, 0 = missing**. A mask has shape
``(N, 1, H, W)`` and broadcasts over the channels of an ``(N, C, H, W)`` batch; the observed image is
``x * m`` and the posterior of an inpainting model uses only the pixels where ``m == 1``.

* :func:`center_square`: one ``size x size`` hole at the centre (LFBM Sec. 4.3: 40x40 on 64x64 CelebA).
* :func:`random_square`: one ``size x size`` hole at a uniformly random position per image (LFBM Sec. 4.6
  "single region mask").
* :func:`salt_and_pepper`: each pixel missing independently with probability ``p`` (or exactly
  ``round(p H W)`` pixels per image with ``exact=True``) (LFBM Sec. 4.6, 30/50/70 %).
* :func:`patches_mask` and :data:`PATCH_COUNTS`: the union of several ``size x size`` holes. The LFBM
  official code's "salt and pepper" occlusion (``train_flexible_priors.py``) is not per pixel: it hides
  random 8x8 patches on 64x64 images, 24 / 48 / 90 of them for a nominal 30 / 50 / 70 %.

**Training occlusions** (:class:`OcclusionSpec`, :func:`occlusion_mask`): for unsupervised recovery the
training set is occluded once and for all -- every image keeps the same mask for the whole run and the
evaluation finds it again -- so each image's mask is drawn from a counter-based hash of its own pixels
and a seed (no state, no index bookkeeping, identical on every device and after resuming). Square sides
are given there as a fraction of the image side (20/64, 30/64, 40/64 in the paper), rounded half up, so
one config scales from 64x64 faces to 8x8 digits. Kinds: ``center``, ``square`` (one random square),
``salt_and_pepper`` (per pixel, rate), ``patches`` (the official code's "salt and pepper": random 8x8
patches on 64x64 images, :data:`PATCH_COUNTS`; on 8x8 digits a 1/8-side patch is one pixel, so per-pixel
``salt_and_pepper`` is the faithful scaling there).

Random masks take a ``generator`` or a ``seed`` (not both) and are reproducible given either. The random
numbers are drawn on the generator's device (the CPU unless given a CUDA generator) and the mask is moved
to ``device``. Hand-written: a few lines each, no library needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "center_square",
    "random_square",
    "salt_and_pepper",
    "patches_mask",
    "patch_count",
    "PATCH_COUNTS",
    "apply_mask",
    "check_mask",
    "square_side",
    "OcclusionSpec",
    "occlusion_mask",
    "hash_uniform",
]

Shape = Sequence[int] | torch.Size


def _shape(shape: Shape) -> tuple[int, int, int]:
    """``(N, H, W)`` from an image batch shape ``(N, C, H, W)``."""
    dims = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else None
    if (
        dims is None
        or len(dims) != 4
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims)
    ):
        raise ValueError(
            f"shape must be an image batch shape (N, C, H, W) of non-negative ints, got {shape!r}"
        )
    return dims[0], dims[2], dims[3]


def _size(size: int, h: int, w: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= min(h, w):
        raise ValueError(f"size must be an integer in [0, min(H, W) = {min(h, w)}], got {size!r}")
    return size


def _generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        return torch.Generator().manual_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def _rng_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _square_mask(top: Tensor, left: Tensor, size: int, h: int, w: int) -> Tensor:
    """``(N, 1, H, W)`` bool mask, False on rows ``[top, top+size)`` x cols ``[left, left+size)``."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)
    return ~(in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def patches_mask(top: Tensor, left: Tensor, size: int, h: int, w: int) -> Tensor:
    """``(N, 1, H, W)`` bool mask, False on the union of the ``K`` squares of side ``size`` with top-left
    corners ``(top[n, k], left[n, k])`` (``top``, ``left``: ``(N, K)`` integer tensors); patches may
    overlap."""
    if top.shape != left.shape or top.dim() != 2:
        raise ValueError(
            f"top and left must both have shape (N, K), got {tuple(top.shape)}, {tuple(left.shape)}"
        )
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[..., None]) & (rows < top[..., None] + size)  # (N, K, H)
    in_cols = (cols >= left[..., None]) & (cols < left[..., None] + size)  # (N, K, W)
    hidden = (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1)  # (N, H, W)
    return ~hidden[:, None]


PATCH_COUNTS: dict[int, int] = {
    10: 7, 20: 15, 30: 24, 40: 35, 50: 48, 55: 56, 60: 65, 65: 76, 70: 90, 75: 108, 80: 134, 85: 176, 90: 250,
}  # fmt: skip
"""Number of 8x8 patches on a 64x64 image for a nominal occlusion percentage, from the LFBM official code
(``train_flexible_priors.py``, ``generate_mask``). Patches overlap, so the hidden fraction is below
``count * 64 / 4096``; the counts were chosen so that it is close to the nominal percentage."""


def patch_count(rate: float) -> int:
    """The official patch count for an occlusion ``rate`` in ``[0, 1]`` (e.g. 0.5 -> 48); only the rates
    of :data:`PATCH_COUNTS` exist."""
    percent = round(100 * float(rate))
    if abs(100 * float(rate) - percent) > 1e-6 or percent not in PATCH_COUNTS:
        raise ValueError(
            f"patch occlusion rate must be one of {sorted(k / 100 for k in PATCH_COUNTS)} (the official "
            f"table), got {rate!r}"
        )
    return PATCH_COUNTS[percent]


def center_square(
    shape: Shape, size: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """Mask ``(N, 1, H, W)`` missing a ``size x size`` square at the centre (top-left ``((H-size)//2,
    (W-size)//2)``), observed elsewhere. ``shape`` is the image batch shape ``(N, C, H, W)``."""
    n, h, w = _shape(shape)
    size = _size(size, h, w)
    top = torch.full((n,), (h - size) // 2, device=device)
    left = torch.full((n,), (w - size) // 2, device=device)
    return _square_mask(top, left, size, h, w).to(dtype)


def random_square(
    shape: Shape,
    size: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Mask ``(N, 1, H, W)`` missing one ``size x size`` square per image, its top-left corner uniform over
    the ``(H - size + 1) x (W - size + 1)`` positions that keep it inside the image."""
    n, h, w = _shape(shape)
    size = _size(size, h, w)
    gen = _generator(generator, seed)
    top = torch.randint(h - size + 1, (n,), generator=gen, device=_rng_device(gen))
    left = torch.randint(w - size + 1, (n,), generator=gen, device=_rng_device(gen))
    return _square_mask(top, left, size, h, w).to(device=device, dtype=dtype)


def salt_and_pepper(
    shape: Shape,
    p: float,
    *,
    exact: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Mask ``(N, 1, H, W)`` missing each pixel independently with probability ``p`` (shared by all
    channels); with ``exact=True`` exactly ``round(p * H * W)`` pixels per image, chosen uniformly."""
    n, h, w = _shape(shape)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"p must be a missing-pixel rate in [0, 1], got {p!r}")
    gen = _generator(generator, seed)
    u = torch.rand(n, h * w, generator=gen, device=_rng_device(gen))
    if exact:
        k = round(p * h * w)
        ranks = u.argsort(dim=1).argsort(dim=1)  # a uniformly random permutation per image
        observed = ranks >= k
    else:
        observed = u >= p
    return observed.reshape(n, 1, h, w).to(device=device, dtype=dtype)


def check_mask(mask: Tensor, x: Tensor) -> Tensor:
    """Validate ``mask`` for images ``x`` (N, C, H, W): shape ``(N, 1, H, W)`` or ``(N, C, H, W)``, values
    in {0, 1}, on ``x``'s device; returns it as ``x``'s dtype."""
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(f"x must be an image batch tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    n, c, h, w = x.shape
    if not isinstance(mask, Tensor) or tuple(mask.shape) not in {(n, 1, h, w), (n, c, h, w)}:
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"mask must have shape ({n}, 1, {h}, {w}) or ({n}, {c}, {h}, {w}) to match x, got {got}"
        )
    if mask.device != x.device:
        raise ValueError(f"mask is on {mask.device} but x is on {x.device}")
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must contain only 0 (missing) and 1 (observed)")
    return mask.to(x.dtype)


def apply_mask(x: Tensor, mask: Tensor, fill: float = 0.0) -> Tensor:
    """Observed image ``x * m + fill * (1 - m)``: keeps the pixels where ``mask == 1``, fills the rest."""
    m = check_mask(mask, x)
    return x * m + fill * (1 - m)


# ---------------------------------------------------------------- training occlusions (Sec. 4.6)

_KINDS = ("none", "center", "square", "salt_and_pepper", "patches")
_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class OcclusionSpec:
    """Which pixels are hidden: ``kind`` in ``none | center | square | salt_and_pepper | patches``.

    Attributes:
        kind: mask family.
        rate: fraction of occluded pixels for ``salt_and_pepper``, in ``[0, 1)``; for ``patches`` the
            nominal percentage of the official table (0.3 / 0.5 / 0.7 -> 24 / 48 / 90 patches).
        size: square side as a fraction of the image side for ``center`` / ``square`` / ``patches``, in
            ``(0, 1]`` (``patches``: 0 means the official 8/64).
        seed: seed of the per-image random masks.
    """

    kind: str = "none"
    rate: float = 0.0
    size: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"occlusion kind must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "salt_and_pepper" and not 0.0 <= self.rate < 1.0:
            raise ValueError(f"occlusion rate must be in [0, 1) for salt_and_pepper, got {self.rate!r}")
        if self.kind == "patches":
            patch_count(self.rate)  # one of the official rates
            if not 0.0 <= self.size <= 1.0:
                raise ValueError(
                    f"patch size must be a fraction of the image side in [0, 1], got {self.size!r}"
                )
        if self.kind in ("center", "square") and not 0.0 < self.size <= 1.0:
            raise ValueError(
                f"occlusion size must be a fraction of the image side in (0, 1], got {self.size!r}"
            )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> OcclusionSpec:
        """From a ``{kind, rate, size, seed}`` mapping (missing keys take the defaults)."""
        return cls(
            kind=str(cfg.get("kind", "none")),
            rate=float(cfg.get("rate", 0.0)),
            size=float(cfg.get("size", 0.0)),
            seed=int(cfg.get("seed", 0)),
        )

    @property
    def active(self) -> bool:
        return self.kind != "none"


def square_side(size: float, image_side: int) -> int:
    """Side in pixels of a square covering ``size`` of an image side (rounded half up, at least 1)."""
    return max(1, min(image_side, int(size * image_side + 0.5)))


def _mix32(h: Tensor) -> Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply) on int64 tensors holding values < 2**32."""
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & _M32
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & _M32
    return h ^ (h >> 16)


def _image_keys(x: Tensor, seed: int) -> Tensor:
    """One 32-bit key per image from its pixels quantised to 8 bits (``(B,)`` int64)."""
    flat = x.detach().reshape(x.shape[0], -1)
    q = ((flat.clamp(-1, 1) + 1) * 127.5).round().to(torch.int64)
    idx = torch.arange(flat.shape[1], device=x.device, dtype=torch.int64)
    weights = _mix32((idx + 0x9E3779B9 + seed) & _M32) & 0xFFFFF  # fixed pseudo-random 20-bit weights
    return _mix32((q * weights).sum(1) & _M32 ^ (seed & _M32))


def hash_uniform(keys: Tensor, n: int) -> Tensor:
    """``(B, n)`` uniforms in ``[0, 1)``: a deterministic function of each row's 32-bit key."""
    idx = torch.arange(n, device=keys.device, dtype=torch.int64)
    h = _mix32((keys[:, None] * 0x2545F49 + idx[None, :] * 0x61C8864 + 0x7F4A7C15) & _M32)
    return h.to(torch.float64).div(2.0**32).float()


def occlusion_mask(x: Tensor, spec: OcclusionSpec) -> Tensor:
    """The fixed occlusion mask of every image in ``x`` (``(B, C, H, W)`` in ``[-1, 1]``).

    Returns ``(B, 1, H, W)`` float, 1 = observed; all ones for ``kind == "none"``.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be images (B, C, H, W), got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    if spec.kind == "none":
        return torch.ones(b, 1, h, w, device=x.device)
    if spec.kind == "center":
        return center_square(tuple(x.shape), square_side(spec.size, min(h, w)), device=x.device)
    keys = _image_keys(x, spec.seed)
    if spec.kind == "salt_and_pepper":
        u = hash_uniform(keys, h * w).view(b, 1, h, w)
        return (u >= spec.rate).float()
    if spec.kind == "patches":
        n, s = patch_count(spec.rate), square_side(spec.size or 8 / 64, min(h, w))
        u = hash_uniform(keys, 2 * n).view(b, 2, n)  # uniform corners, the patch inside the image
        top = (u[:, 0] * (h - s + 1)).floor().long()
        left = (u[:, 1] * (w - s + 1)).floor().long()
        return patches_mask(top, left, s, h, w).float()
    s = square_side(spec.size, min(h, w))
    u = hash_uniform(keys, 2)
    top = (u[:, 0] * (h - s + 1)).floor().long()
    left = (u[:, 1] * (w - s + 1)).floor().long()
    return _square_mask(top, left, s, h, w).float()
