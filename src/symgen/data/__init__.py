"""Datasets: toy 2-D distributions with exact densities, the bundled 8x8 digits, on-disk image readers,
masks and occlusions (:mod:`symgen.data.masks`) and protocol splits (:mod:`symgen.data.splits`).

``load(name, **kwargs)`` returns a :class:`Toy2D` (``kind == "toy2d"``) or an :class:`ImageData`
(``kind == "image"``). ``name`` is a name registered in :data:`symgen.registry.DATASETS` (listed in
:data:`DATASET_NAMES`) or a path to an image folder or a ``.npz`` file. See ``docs/data.md``.

Example:
    >>> from symgen.data import load
    >>> load("spiral").sample(4).shape
    torch.Size([4, 2])
    >>> load("digits", split="test").x.shape
    torch.Size([360, 1, 8, 8])
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from symgen.data import (
    masks,
    splits,
    standard,  # noqa: F401  (registers mnist, cifar10, svhn, celeba)
)
from symgen.data.base import ImageData
from symgen.data.digits import load_digits
from symgen.data.images import load_path
from symgen.data.toy2d import TOY_NAMES, Toy2D
from symgen.registry import DATASETS

__all__ = ["load", "Toy2D", "ImageData", "DATASET_NAMES", "TOY_NAMES", "load_digits", "masks", "splits"]

DATASET_NAMES: tuple[str, ...] = tuple(DATASETS.names())


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.endswith(".npz") or os.path.exists(name)


def load(name: str | os.PathLike, **kwargs: Any) -> Toy2D | ImageData:
    """The dataset registered as ``name`` built with ``kwargs``, or the image folder / ``.npz`` at a path.

    Raises ``KeyError`` (with a suggestion) for an unknown name and ``ValueError`` naming the arguments a
    dataset accepts when given one it does not.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"name must be a dataset name or a path, got {name!r}")
    text = os.fspath(name)
    if text not in DATASETS and _looks_like_path(text):
        factory, args = load_path, (text,)
    else:
        factory, args = DATASETS.get(text), ()
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as exc:
        accepted = ", ".join(p for p in inspect.signature(factory).parameters if p != "kwargs")
        if factory is load_path:
            accepted = "those of symgen.data.images.load_image_folder / load_npz"
        raise ValueError(f"dataset '{text}': {exc}; it accepts {accepted}") from None
    return factory(*args, **kwargs)
