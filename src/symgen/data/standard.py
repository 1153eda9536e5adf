"""Readers of the distributed files of MNIST, Fashion-MNIST, CIFAR-10, SVHN and CelebA (no torchvision).

* MNIST / Fashion-MNIST: the four IDX files, gzipped or not (``train-images-idx3-ubyte(.gz)``...).
* CIFAR-10: the python pickle batches (``cifar-10-batches-py/``) or the ``cifar-10-python.tar.gz``
  archive itself, unpickled with an allow-list (only numpy arrays and builtins) so a crafted file cannot
  run code.
* SVHN: the cropped-digit ``.mat`` files (``train_32x32.mat``...) via ``scipy.io.loadmat``.
* CelebA: the aligned JPEG folder ``img_align_celeba/`` (+ ``list_eval_partition.txt`` for splits),
  centre-cropped and resized.

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
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from symgen.data.base import (
    ImageData,
    check_image_size,
    check_split,
    resize_images,
    to_unit_range,
)
from symgen.data.images import (
    PathLike,
    _find,
    _labels,
    _limit,
    _root,
    _stack_images,
)
from symgen.registry import DATASETS

__all__ = ["read_idx", "load_mnist", "load_fashion_mnist", "load_cifar10", "load_svhn", "load_celeba"]


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
