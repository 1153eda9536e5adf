"""The in-memory image dataset record :class:`ImageData` and the checks and conversions its readers share.

Every image reader (:mod:`symgen.data.digits`, :mod:`symgen.data.standard`, :mod:`symgen.data.images`)
returns an :class:`ImageData`:
float32 images ``(N, C, H, W)`` scaled to ``[-1, 1]`` and optional integer labels. The helpers here turn
raw pixel arrays into that form (:func:`to_unit_range`), resize (:func:`resize_images`, bilinear with
antialiasing, as ``torchvision.transforms.Resize`` does), and pick deterministic train/test splits
(:func:`split_indices`, scikit-learn's stratified ``train_test_split``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import Tensor

__all__ = [
    "ImageData",
    "to_unit_range",
    "resize_images",
    "check_image_size",
    "check_split",
    "split_indices",
]


@dataclass(frozen=True, eq=False)
class ImageData:
    """A labelled (or unlabelled) image dataset held in memory.

    Attributes:
        name: dataset name (``"digits"``, ``"mnist"``, a path...).
        x: float32 images ``(N, C, H, W)`` with values in ``[-1, 1]``.
        y: int64 labels ``(N,)`` in ``[0, num_classes)``, or ``None``.
        num_classes: number of classes (inferred from ``y`` when not given), ``None`` without labels.
        classes: optional class names, ``len(classes) == num_classes``.
        kind: always ``"image"``.
    """

    name: str
    x: Tensor
    y: Tensor | None = None
    num_classes: int | None = None
    classes: tuple[str, ...] | None = None
    kind: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if not isinstance(x, Tensor) or x.dtype != torch.float32 or x.ndim != 4:
            got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a float32 tensor of shape (N, C, H, W), got {got}")
        if x.numel() and not (x.min() >= -1 and x.max() <= 1):  # also rejects NaN
            raise ValueError(f"x must have values in [-1, 1], got range [{x.min():.4g}, {x.max():.4g}]")
        if y is None:
            if self.num_classes is not None or self.classes is not None:
                raise ValueError("num_classes and classes need labels y")
            return
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.shape != (len(x),):
            got = f"{y.dtype} tensor of shape {tuple(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"y must be an int64 tensor of shape ({len(x)},), got {got}")
        num_classes = self.num_classes
        if num_classes is None:
            num_classes = len(self.classes) if self.classes is not None else int(y.max()) + 1 if len(y) else 0
            object.__setattr__(self, "num_classes", num_classes)
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"y must lie in [0, num_classes={num_classes}), got [{y.min()}, {y.max()}]")
        if self.classes is not None and len(self.classes) != num_classes:
            raise ValueError(f"classes has {len(self.classes)} names but num_classes is {num_classes}")

    @property
    def event_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.x.shape[1:]
        return (c, h, w)

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx: Tensor | np.ndarray | list[int] | slice) -> ImageData:
        """The dataset restricted to ``idx`` (indices, boolean mask or slice); keeps ``num_classes``."""
        if not isinstance(idx, slice):
            idx = torch.as_tensor(idx)
            if idx.dtype != torch.bool:
                idx = idx.long()
        y = None if self.y is None else self.y[idx]
        return ImageData(self.name, self.x[idx], y, self.num_classes, self.classes)

    def __repr__(self) -> str:
        shape, k = self.event_shape, self.num_classes
        return f"ImageData(name={self.name!r}, n={len(self)}, event_shape={shape}, num_classes={k})"


def to_unit_range(pixels: np.ndarray | Tensor, max_value: float = 255.0) -> Tensor:
    """Map pixel values in ``[0, max_value]`` linearly to float32 in ``[-1, 1]``."""
    if isinstance(pixels, Tensor):
        arr = pixels
    else:
        pixels = np.asarray(pixels)
        arr = torch.as_tensor(pixels if pixels.flags.writeable else pixels.copy())
    if arr.numel() and (arr.min() < 0 or arr.max() > max_value):
        raise ValueError(f"pixels must lie in [0, {max_value}], got [{arr.min()}, {arr.max()}]")
    return (arr.to(torch.float32) * (2.0 / max_value) - 1.0).clamp_(-1.0, 1.0)


def check_image_size(image_size: int | None) -> int | None:
    """Validate an ``image_size`` argument: ``None`` (keep) or a positive integer."""
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(f"image_size must be None or a positive integer, got {image_size!r}")
    return image_size


def resize_images(x: Tensor, image_size: int | None, chunk: int = 1024) -> Tensor:
    """Resize ``(N, C, H, W)`` images to ``image_size x image_size`` (bilinear, antialiased); ``None`` keeps.

    Bilinear and antialias weights are convex, so values stay in the input range (clamped to ``[-1, 1]``
    against rounding).
    """
    check_image_size(image_size)
    if image_size is None or tuple(x.shape[-2:]) == (image_size, image_size) or len(x) == 0:
        return x
    parts = [
        F.interpolate(xb, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        for xb in x.split(chunk)
    ]
    return torch.cat(parts).clamp_(-1.0, 1.0)


def check_split(split: str, allowed: tuple[str, ...], dataset: str) -> str:
    """Validate a ``split`` argument against the splits ``allowed`` for ``dataset``."""
    if split not in allowed:
        raise ValueError(f"split for {dataset} must be one of {', '.join(map(repr, allowed))}; got {split!r}")
    return split


def split_indices(
    n: int, split: str, seed: int = 0, test_fraction: float = 0.2, labels: np.ndarray | None = None
) -> np.ndarray:
    """Sorted indices of the ``"train"``, ``"test"`` or ``"all"`` part of ``n`` items.

    The split is sklearn's ``train_test_split`` with ``random_state=seed``, stratified by ``labels`` when
    every class has at least two members and both parts can hold every class; deterministic given ``seed``.
    """
    check_split(split, ("train", "test", "all"), "this dataset")
    if not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    idx = np.arange(n)
    if split == "all":
        return idx
    stratify = None
    if labels is not None:
        counts = np.unique(labels, return_counts=True)[1]
        n_test = int(np.ceil(test_fraction * n))
        if len(counts) > 1 and counts.min() >= 2 and min(n_test, n - n_test) >= len(counts):
            stratify = labels
    train, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
    return np.sort(train if split == "train" else test)
