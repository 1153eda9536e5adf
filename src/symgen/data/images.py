"""Readers for on-disk image datasets in their standard distributed formats, without torchvision.

* MNIST / Fashion-MNIST: the four IDX files, gzipped or not (``train-images-idx3-ubyte(.gz)``...).
* CIFAR-10: the python pickle batches (``cifar-10-batches-py/``) or the ``cifar-10-python.tar.gz``
  archive itself, unpickled with an allow-list (only numpy arrays and builtins) so a crafted file cannot
  run code.
* SVHN: the cropped-digit ``.mat`` files (``train_32x32.mat``...) via ``scipy.io.loadmat``.
* CelebA: the aligned JPEG folder ``img_align_celeba/`` (+ ``list_eval_partition.txt`` for splits),
  centre-cropped and resized.
* Any folder of images (PIL), labelled by sub-folder when every image sits in a direct sub-folder.
* ``.npz`` arrays (``allow_pickle=False``).

All return an :class:`~symgen.data.base.ImageData` with float32 images in ``[-1, 1]``. A missing file raises
``FileNotFoundError`` naming the file, the folder it is looked for in and where to get it. ``limit`` keeps
only the first ``limit`` images of the split (in file order), so large sets can be read partially.

Hand-written: torchvision's dataset classes do this but would make torchvision a dependency (and they
download); no small maintained library reads these formats.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import pickle
import struct
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
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

__all__ = [
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "load_svhn",
    "load_celeba",
    "load_image_folder",
    "load_npz",
    "load_path",
    "IMAGE_EXTENSIONS",
]

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
    """Decode one image to ``(H, W, channels)`` uint8."""
    with Image.open(path) as img:
        arr = np.asarray(img.convert("L" if channels == 1 else "RGB"))
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


# ---------------------------------------------------------------- MNIST / Fashion-MNIST

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzipped when its name ends in ``.gz``) into a numpy array."""
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    ndim, dtype = data[3], np.dtype(_IDX_DTYPES[data[2]])
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: IDX header says {expected} bytes for shape {dims}, file has {len(data)}")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)


def _load_idx_set(
    title: str,
    torch_dir: str,
    url: str,
    root: PathLike,
    split: str,
    image_size: int | None,
    limit: int | None,
) -> ImageData:
    check_split(split, ("train", "test", "all"), title)
    check_image_size(image_size)
    base = _root(root, f"the {title} folder")
    parts = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}[split]
    xs, ys = [], []
    for prefix in parts:
        found = []
        for kind, rank in (("images", 3), ("labels", 1)):
            stem = f"{prefix}-{kind}-idx{rank}-ubyte"
            names = [stem, stem + ".gz", f"{prefix}-{kind}.idx{rank}-ubyte"]
            hint = f"download it from {url} and put it there"
            path = _find(base, names, ["", "raw", f"{torch_dir}/raw"], title, hint, f"{stem}(.gz)")
            found.append((read_idx(path), path))
        (images, ipath), (labels, lpath) = found
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"{ipath}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images) or labels.max(initial=0) > 9:
            raise ValueError(f"{lpath}: expected {len(images)} labels in 0..9, got shape {labels.shape}")
        xs.append(images)
        ys.append(labels)
    n = _limit(sum(len(a) for a in xs), limit)
    x = to_unit_range(np.concatenate(xs)[:n])[:, None]
    return ImageData(
        title.lower().replace("-", "_"), resize_images(x, image_size), _labels(np.concatenate(ys)[:n]), 10
    )


@DATASETS.register("mnist", "MNIST from its IDX files in root (train 60k / test 10k, 28x28, 10 classes)")
def load_mnist(
    root: PathLike, split: str = "train", image_size: int | None = None, limit: int | None = None
) -> ImageData:
    """MNIST from ``root`` (files ``train-images-idx3-ubyte(.gz)`` etc., also in ``root/raw`` or
    ``root/MNIST/raw``); ``split`` is ``"train"``, ``"test"`` or ``"all"``; images ``(N, 1, 28, 28)``."""
    url = "http://yann.lecun.com/exdb/mnist/"
    return _load_idx_set("MNIST", "MNIST", url, root, split, image_size, limit)


@DATASETS.register("fashion_mnist", "Fashion-MNIST from its IDX files in root (28x28, 10 classes)")
def load_fashion_mnist(
    root: PathLike, split: str = "train", image_size: int | None = None, limit: int | None = None
) -> ImageData:
    """Fashion-MNIST from ``root`` (same file names as MNIST; also ``root/FashionMNIST/raw``)."""
    url = "https://github.com/zalandoresearch/fashion-mnist"
    return _load_idx_set("Fashion-MNIST", "FashionMNIST", url, root, split, image_size, limit)


# ---------------------------------------------------------------- CIFAR-10


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn  # type: ignore[no-redef]
    return fn


def _scalar() -> Any:
    try:
        from numpy._core.multiarray import scalar as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar as fn  # type: ignore[no-redef]
    return fn


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy arrays, dtypes, scalars and ``codecs.encode`` (all CIFAR batches
    need); anything else, e.g. a callable that would run on load, is refused."""

    _ALLOWED = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: codecs.encode,  # how python 3 pickles bytes at protocol 2
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "scalar"): _scalar,
        ("numpy._core.multiarray", "scalar"): _scalar,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: not a numpy array type")
        return self._ALLOWED[(module, name)]()


def _cifar_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:
        raise ValueError(f"{source}: not a CIFAR-10 python batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{source}: expected a dict with 'data' and 'labels', got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = np.asarray(batch.get("data")), np.asarray(batch.get("labels"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise ValueError(f"{source}: expected uint8 'data' (N, 3072) and N 'labels', got {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


@DATASETS.register("cifar10", "CIFAR-10 python batches in root (train 50k / test 10k, 32x32 RGB, 10 classes)")
def load_cifar10(
    root: PathLike, split: str = "train", image_size: int | None = None, limit: int | None = None
) -> ImageData:
    """CIFAR-10 from ``root``: ``cifar-10-batches-py/{data_batch_1..5, test_batch}`` (or those files in
    ``root`` itself), or the unextracted ``cifar-10-python.tar.gz``; images ``(N, 3, 32, 32)``."""
    check_split(split, ("train", "test", "all"), "CIFAR-10")
    check_image_size(image_size)
    base = _root(root, "the CIFAR-10 folder")
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    wanted = names["train"] + names["test"] if split == "all" else names[split]
    archive = base / "cifar-10-python.tar.gz"
    batches = []
    if not (base / "cifar-10-batches-py").is_dir() and not (base / wanted[0]).is_file() and archive.is_file():
        with tarfile.open(archive, "r:gz") as tar:
            for name in wanted:
                try:
                    member = tar.extractfile(f"cifar-10-batches-py/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise FileNotFoundError(f"CIFAR-10: {archive} has no cifar-10-batches-py/{name}")
                batches.append(_cifar_batch(member.read(), f"{archive}:{name}"))
    else:
        site = "https://www.cs.toronto.edu/~kriz/cifar.html"
        hint = f"download cifar-10-python.tar.gz from {site} and extract it there"
        for name in wanted:
            path = _find(base, [name], ["cifar-10-batches-py", ""], "CIFAR-10", hint)
            batches.append(_cifar_batch(path.read_bytes(), str(path)))
    n = _limit(sum(len(b[0]) for b in batches), limit)
    x = to_unit_range(np.concatenate([b[0] for b in batches])[:n])
    y = _labels(np.concatenate([b[1] for b in batches])[:n])
    if len(y) and y.max() > 9:
        raise ValueError(f"CIFAR-10 labels must be 0..9, got max {int(y.max())}")
    return ImageData("cifar10", resize_images(x, image_size), y, 10)


# ---------------------------------------------------------------- SVHN


@DATASETS.register("svhn", "SVHN cropped digits from train/test/extra_32x32.mat in root (32x32 RGB)")
def load_svhn(
    root: PathLike, split: str = "train", image_size: int | None = None, limit: int | None = None
) -> ImageData:
    """SVHN from ``root/{train,test,extra}_32x32.mat``; ``split`` is ``"train"``, ``"test"``, ``"extra"`` or
    ``"all"`` (train + test). Label 10 of the files (digit 0) becomes 0; images ``(N, 3, 32, 32)``."""
    check_split(split, ("train", "test", "extra", "all"), "SVHN")
    check_image_size(image_size)
    base = _root(root, "the SVHN folder")
    xs, ys = [], []
    for part in ["train", "test"] if split == "all" else [split]:
        hint = "download it from http://ufldl.stanford.edu/housenumbers/ and put it there"
        path = _find(base, [f"{part}_32x32.mat"], [""], "SVHN", hint)
        mat = scipy.io.loadmat(path)
        x, y = mat.get("X"), mat.get("y")
        if x is None or y is None or x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
            raise ValueError(f"{path}: expected uint8 'X' (32, 32, 3, N) and 'y' (N, 1)")
        y = np.asarray(y).reshape(-1)
        if len(y) != x.shape[3] or y.min(initial=1) < 0 or y.max(initial=1) > 10:
            raise ValueError(f"{path}: expected {x.shape[3]} labels in 0..10, got shape {y.shape}")
        xs.append(x.transpose(3, 2, 0, 1))
        ys.append(np.where(y == 10, 0, y))
    n = _limit(sum(len(a) for a in xs), limit)
    x = to_unit_range(np.concatenate(xs)[:n])
    return ImageData("svhn", resize_images(x, image_size), _labels(np.concatenate(ys)[:n]), 10)


# ---------------------------------------------------------------- CelebA


@DATASETS.register("celeba", "CelebA aligned JPEGs in root/img_align_celeba (centre crop 140, resized)")
def load_celeba(
    root: PathLike,
    split: str = "train",
    image_size: int | None = 64,
    crop: int = 140,
    limit: int | None = None,
) -> ImageData:
    """CelebA from the aligned JPEG folder ``img_align_celeba`` in ``root`` (or ``root/celeba``), each
    image centre-cropped to ``crop x crop`` then resized to ``image_size`` (``None`` keeps ``crop``).

    ``split`` ``"train"``/``"valid"``/``"test"`` read ``list_eval_partition.txt`` (next to the folder);
    ``"all"`` takes every JPEG. No labels (``y`` is ``None``).
    """
    check_split(split, ("train", "valid", "test", "all"), "CelebA")
    check_image_size(image_size)
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 1:
        raise ValueError(f"crop must be a positive integer, got {crop!r}")
    base = _root(root, "the CelebA folder")
    site = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
    hint = f"download img_align_celeba.zip from {site} and unzip it there"
    folder = next(
        (base / s / "img_align_celeba" for s in ["", "celeba"] if (base / s / "img_align_celeba").is_dir()),
        None,
    )
    if folder is None:
        raise FileNotFoundError(
            f"CelebA: expected the folder img_align_celeba/ in {base} (or {base / 'celeba'}); {hint}"
        )
    if split == "all":
        files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        hint = "download list_eval_partition.txt from the CelebA site and put it there"
        part_file = _find(folder.parent, ["list_eval_partition.txt"], [""], "CelebA", hint)
        code = {"train": "0", "valid": "1", "test": "2"}[split]
        files = [
            ln.split()[0]
            for ln in part_file.read_text().splitlines()
            if len(ln.split()) == 2 and ln.split()[1] == code
        ]
    if not files:
        raise FileNotFoundError(f"CelebA: no images for split {split!r} in {folder}")
    if any(Path(f).name != f for f in files):
        raise ValueError("CelebA: list_eval_partition.txt must list bare file names (no folders)")
    paths = [folder / f for f in files[: _limit(len(files), limit)]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"CelebA: {len(missing)} listed images missing from {folder}, e.g. {missing[0].name}"
        )
    return ImageData("celeba", _stack_images(paths, 3, image_size, crop))


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
    with np.load(path, allow_pickle=False) as archive:
        key = next((k for k in _X_KEYS if k in archive.files), None)
        if key is None:
            raise ValueError(
                f"{path}: no image array; expected one of {', '.join(_X_KEYS)}, found {archive.files}"
            )
        x_arr = archive[key]
        y_key = next((k for k in _Y_KEYS if k in archive.files and k != key), None)
        y_arr = archive[y_key] if y_key else None
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
