"""Pixel masks for inpainting and recovery from incomplete images (Sections 4.3 and 4.6 of the LFBM paper).

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

Random masks take a ``generator`` or a ``seed`` (not both) and are reproducible given either. The random
numbers are drawn on the generator's device (the CPU unless given a CUDA generator) and the mask is moved
to ``device``. Hand-written: a few lines each, no library needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    "make_mask",
    "MASKS",
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


MASKS: dict[str, Callable[..., Tensor]] = {
    "center_square": center_square,
    "random_square": random_square,
    "salt_and_pepper": salt_and_pepper,
}


def make_mask(kind: str, shape: Shape, **kwargs: Any) -> Tensor:
    """Mask by name (``"center_square"``, ``"random_square"``, ``"salt_and_pepper"``), e.g. from a config."""
    if kind not in MASKS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, MASKS))}, got {kind!r}")
    return MASKS[kind](shape, **kwargs)
