r"""Occlusion masks of the LFBM paper's Sec. 4.3 (inpainting) and Sec. 4.6 (learning from occluded data).

Masks are ``1`` on observed pixels and ``0`` on occluded ones, shape ``(B, 1, H, W)`` (shared by the
channels). Four kinds:

* ``center`` -- a centred ``s x s`` square (supervised inpainting, Sec. 4.3: 40x40 on 64x64 CelebA);
* ``square`` -- an ``s x s`` square at a random position in each image (Sec. 4.6: 20/30/40 on 64x64);
* ``salt_and_pepper`` -- each pixel occluded independently with probability ``rate`` (Sec. 4.6: 30/50/70%);
* ``patches`` -- the official code's "salt and pepper" (``train_flexible_priors.py``): random squares of
  side ``size`` (8/64 there) at uniform positions, as many as :data:`symgen.data.masks.PATCH_COUNTS` gives
  for ``rate`` (24 / 48 / 90 for 30 / 50 / 70%). On 8x8 digits a patch of 1/8 of the side is one pixel,
  so per-pixel ``salt_and_pepper`` is the faithful scaling there; ``patches`` is for 64x64 images.

Square sides are given as a fraction of the image side (``size``; 20/64, 30/64, 40/64 in the paper) and
rounded half up, so the same config scales from 64x64 faces to 8x8 digits.

For unsupervised recovery the *training set* is occluded once and for all: every image must keep the
same mask for the whole run and the evaluation must find it again. :func:`occlusion_mask` therefore
draws each image's mask from a counter-based hash of the image's own pixels and a seed -- no state, no
index bookkeeping, identical on every device and after resuming. Hand-written: torch has no stateless
per-row random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from symgen.data.masks import center_square, patch_count, patches_mask

__all__ = ["OcclusionSpec", "occlusion_mask", "square_side", "center_square_mask", "hash_uniform"]

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


def center_square_mask(shape: tuple[int, ...], size: float, device: torch.device | None = None) -> Tensor:
    """``(B, 1, H, W)`` mask hiding a centred square of side ``size * H`` (LFBM Sec. 4.3)."""
    return center_square(tuple(shape), square_side(size, min(shape[2], shape[3])), device=device)


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
        return center_square_mask(tuple(x.shape), spec.size, x.device)
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
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + s)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + s)
    hidden = in_rows[:, :, None] & in_cols[:, None, :]
    return (~hidden).float().unsqueeze(1)
