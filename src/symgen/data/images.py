"""Generic on-disk image readers (any image folder via PIL, ``.npz`` arrays, a path) and the helpers the
dataset readers share (file lookup with helpful errors, PIL decoding, centre crop, resizing).

The readers of the standard distributed datasets (MNIST, Fashion-MNIST, CIFAR-10, SVHN, CelebA) live in
:mod:`symgen.data.standard`. All return an :class:`~symgen.data.base.ImageData` with float32 images in
``[-1, 1]``; ``.npz`` files are read with ``allow_pickle=False``. Hand-written: a few lines of PIL/numpy
each, no maintained library (torchvision would be a heavy dependency) is needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from symgen.data.base import (
    ImageData,
    check_image_size,
    check_split,
    resize_images,
    split_indices,
    to_unit_range,
)
from symgen.registry import DATASETS

__all__ = ["load_image_folder", "load_npz", "load_path", "IMAGE_EXTENSIONS", "PathLike"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
PathLike = str | os.PathLike


# ---------------------------------------------------------------- shared helpers


def _root(root: PathLike, what: str) -> Path:
    if not isinstance(root, (str, os.PathLike)) or not str(root):
        raise ValueError(f"root must be a path to {what}, got {root!r}")
    return Path(root).expanduser()


def _find(
    root: Path, names: Sequence[str], subdirs: Sequence[str], title: str, hint: str, label: str | None = None
) -> Path:
    """First existing ``root/subdir/name``, else ``FileNotFoundError`` saying what to put where."""
    for sub in subdirs:
        for name in names:
            path = root / sub / name if sub else root / name
            if path.is_file():
                return path
    also = [str(root / s) for s in subdirs if s]
    where = f"{root}" + (f" (or {', '.join(also)})" if also else "")
    raise FileNotFoundError(f"{title}: expected {label or names[0]} in {where}; {hint}")


def _limit(n: int, limit: int | None) -> int:
    if limit is None:
        return n
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be None or a positive integer, got {limit!r}")
    return min(n, limit)


def _labels(y: np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(y).astype(np.int64).reshape(-1))


def _center_crop(x: Tensor, size: int, source: object) -> Tensor:
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"{source}: image of size {h}x{w} is smaller than the crop {size}x{size}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def _read_pil(path: Path, channels: int) -> np.ndarray:
    """Decode one image to ``(H, W, channels)`` uint8; an unreadable file raises ``ValueError`` naming it."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"{path}: cannot decode this image file ({type(exc).__name__}: {exc})") from None
    return arr[..., None] if arr.ndim == 2 else arr


def _stack_images(paths: Sequence[Path], channels: int, image_size: int | None, crop: int | None) -> Tensor:
    """Decode ``paths`` to ``(N, C, H, W)`` in [-1, 1]: optional centre ``crop`` (or square crop when sizes
    differ and ``image_size`` is set), then resize to ``image_size``."""
    out, first = [], None
    for path in paths:
        x = to_unit_range(_read_pil(path, channels)).permute(2, 0, 1)[None]
        if crop is not None:
            x = _center_crop(x, crop, path)
        elif image_size is not None:
            x = _center_crop(x, min(x.shape[-2:]), path)
        elif first is None:
            first = x.shape
        elif x.shape != first:
            raise ValueError(
                f"{path}: size {tuple(x.shape[-2:])} differs from {tuple(first[-2:])} of the first image; "
                "pass image_size=... to centre-crop and resize all images to one size"
            )
        out.append(resize_images(x, image_size))
    return torch.cat(out)


# ---------------------------------------------------------------- generic folder / npz


@DATASETS.register("folder", "any folder of images (PIL); labelled by sub-folder when all images are in one")
def load_image_folder(
    root: PathLike,
    image_size: int | None = None,
    channels: int = 3,
    split: str = "all",
    seed: int = 0,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> ImageData:
    """Every image file under ``root`` (recursively, sorted by path), as ``channels`` = 1 (grey) or 3 (RGB).

    If every image lies in a direct sub-folder of ``root`` the sub-folder names (sorted) are the classes.
    Without ``image_size`` all images must share one size; with it each is centre-cropped to a square and
    resized. ``split`` ``"train"``/``"test"`` is a seeded (stratified) split with ``test_fraction``.
    """
    base = _root(root, "an image folder")
    check_split(split, ("train", "test", "all"), "an image folder")
    check_image_size(image_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if not base.is_dir():
        why = "is not a directory" if base.exists() else "does not exist"
        raise FileNotFoundError(f"image folder: {base} {why}")
    paths = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise FileNotFoundError(f"image folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {base}")
    rel = [p.relative_to(base).parts for p in paths]
    classes = sorted({r[0] for r in rel}) if all(len(r) == 2 for r in rel) else None
    labels = np.array([classes.index(r[0]) for r in rel]) if classes else None
    idx = split_indices(len(paths), split, seed, test_fraction, labels)
    idx = idx[: _limit(len(idx), limit)]
    x = _stack_images([paths[i] for i in idx], channels, image_size, None)
    y = _labels(labels[idx]) if labels is not None else None
    return ImageData(str(root), x, y, len(classes) if classes else None, tuple(classes) if classes else None)


_X_KEYS = ("x", "images", "X", "data", "arr_0")
_Y_KEYS = ("y", "labels", "Y", "targets", "arr_1")


def _npz_layout(arr: np.ndarray, layout: str | None, path: Path) -> np.ndarray:
    """Bring ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` to ``(N, C, H, W)``."""
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"{path}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got {arr.shape}")
    if layout is None:
        first, last = arr.shape[1] in (1, 3, 4), arr.shape[3] in (1, 3, 4)
        if first == last:
            raise ValueError(
                f"{path}: cannot tell channels-first from channels-last for shape {arr.shape}; "
                "pass layout='NCHW' or layout='NHWC'"
            )
        layout = "NCHW" if first else "NHWC"
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be None, 'NCHW' or 'NHWC', got {layout!r}")
    return arr if layout == "NCHW" else arr.transpose(0, 3, 1, 2)


def _npz_range(arr: np.ndarray, value_range: tuple[float, float] | None, path: Path) -> tuple[float, float]:
    """Pixel range mapped to [-1, 1]: ``value_range``, else uint8 -> (0, 255), float -> (0, 1) or (-1, 1)."""
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
    if value_range is None:
        floating = np.issubdtype(arr.dtype, np.floating)
        if arr.dtype == np.uint8:
            value_range = (0.0, 255.0)
        elif floating and lo >= 0 and hi <= 1:
            value_range = (0.0, 1.0)
        elif floating and lo >= -1 and hi <= 1:
            value_range = (-1.0, 1.0)
        else:
            raise ValueError(
                f"{path}: cannot infer the value range of {arr.dtype} images with values in "
                f"[{lo:.4g}, {hi:.4g}]; pass value_range=(low, high)"
            )
    if len(value_range) != 2:
        raise ValueError(f"value_range must be a pair (low, high), got {value_range!r}")
    a, b = map(float, value_range)
    if not (b > a and a <= lo and hi <= b):
        raise ValueError(
            f"value_range {tuple(value_range)} must be increasing and contain the data range "
            f"[{lo:.4g}, {hi:.4g}]"
        )
    return a, b


@DATASETS.register("npz", "images (and optional labels) from a .npz file given as root")
def load_npz(
    root: PathLike,
    image_size: int | None = None,
    split: str = "all",
    seed: int = 0,
    test_fraction: float = 0.2,
    layout: str | None = None,
    value_range: tuple[float, float] | None = None,
    limit: int | None = None,
) -> ImageData:
    """Images from the ``.npz`` file ``root``: array ``x`` (or ``images``, ``X``, ``data``, ``arr_0``) and
    optional integer labels ``y`` (or ``labels``, ``Y``, ``targets``, ``arr_1``).

    Images may be ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` (``layout`` settles ambiguous shapes);
    uint8 is read as 0..255, float as [0, 1] or [-1, 1] (``value_range`` overrides). ``split`` as for
    :func:`load_image_folder`.
    """
    path = _root(root, "a .npz file")
    check_split(split, ("train", "test", "all"), "a .npz file")
    check_image_size(image_size)
    if not path.is_file():
        raise FileNotFoundError(f"npz: expected the file {path.name} in {path.parent}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            key = next((k for k in _X_KEYS if k in archive.files), None)
            if key is None:
                raise ValueError(
                    f"{path}: no image array; expected one of {', '.join(_X_KEYS)}, found {archive.files}"
                )
            x_arr = archive[key]
            y_key = next((k for k in _Y_KEYS if k in archive.files and k != key), None)
            y_arr = archive[y_key] if y_key else None
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        why = "neither a zip of arrays nor an array" if "pickle" in str(exc) else str(exc)
        raise ValueError(f"{path}: not a readable .npz archive ({why}; symgen never unpickles)") from None
    except (OSError, EOFError) as exc:  # random bytes, truncated zip
        raise ValueError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    if not (np.issubdtype(x_arr.dtype, np.integer) or np.issubdtype(x_arr.dtype, np.floating)):
        raise ValueError(
            f"{path}: images '{key}' must be numbers (integer or float), got dtype {x_arr.dtype}"
        )
    x_arr = _npz_layout(x_arr, layout, path)
    if y_arr is not None and (not np.issubdtype(y_arr.dtype, np.integer) or y_arr.shape != (len(x_arr),)):
        raise ValueError(
            f"{path}: labels '{y_key}' must be integers of shape ({len(x_arr)},), "
            f"got {y_arr.dtype} {y_arr.shape}"
        )
    if y_arr is not None and len(y_arr) and y_arr.min() < 0:
        raise ValueError(f"{path}: labels '{y_key}' must be non-negative, got min {y_arr.min()}")
    a, b = _npz_range(x_arr, value_range, path)
    idx = split_indices(len(x_arr), split, seed, test_fraction, y_arr)
    idx = idx[: _limit(len(idx), limit)]
    x = torch.as_tensor(x_arr[idx].astype(np.float32))
    x = resize_images(((x - a) * (2.0 / (b - a)) - 1.0).clamp_(-1.0, 1.0), image_size)
    return ImageData(str(root), x, _labels(y_arr[idx]) if y_arr is not None else None)


def load_path(path: PathLike, **kwargs: Any) -> ImageData:
    """Read ``path``: a directory with :func:`load_image_folder`, a ``.npz`` file with :func:`load_npz`."""
    p = _root(path, "an image folder or a .npz file")
    if p.is_dir():
        return load_image_folder(p, **kwargs)
    if p.suffix.lower() == ".npz":
        return load_npz(p, **kwargs)
    if not p.exists():
        raise FileNotFoundError(f"dataset path {p} does not exist (expected an image folder or a .npz file)")
    raise ValueError(f"dataset path {p} must be an image folder or a .npz file")
