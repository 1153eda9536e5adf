"""Feature extractors for image metrics: a small per-dataset classifier that symgen trains and caches,
Inception-v3 from a local weights file, and raw pixels.

An extractor is an ``nn.Module`` mapping images ``(N, C, H, W)`` with values in ``[-1, 1]`` to features
``(N, num_features)``; :func:`get_extractor` builds one from a spec string:

* ``"classifier:<dataset>"`` -- the penultimate layer of :class:`SmallCNN` trained on the *training
  split* of ``<dataset>`` (built in: ``digits``, sklearn's 8x8 handwritten digits, with symgen's default
  train/test split, so the test images that ``fd_clf`` uses as its reference were never seen by the
  classifier). It is trained once (seconds on a CPU), saved
  atomically with its test accuracy under ``$SYMGEN_CACHE/classifiers/`` (default ``~/.cache/symgen``) and
  reloaded with ``torch.load(weights_only=True)``. Inputs of another size are resized to the classifier's
  input size with ``F.interpolate`` (area averaging when shrinking). Distances in this space are *not*
  Inception FIDs and must be reported under their own names (``fd_clf``).
* ``"inception"`` -- the 2048-d pool features of the TF-ported Inception-v3 used by the FID literature,
  through ``torchmetrics``' wrapper of ``torch-fidelity`` (optional: ``pip install torch-fidelity``) with
  weights read from a local file (nothing is downloaded).
* ``"pixels"`` -- flattened pixels (for tests and tiny data).

Hand-written: the per-dataset classifier is symgen's own, there is no maintained equivalent for small
datasets such as the 8x8 digits.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SmallCNN",
    "ClassifierFeatures",
    "PixelFeatures",
    "InceptionFeatures",
    "CLASSIFIER_DATASETS",
    "classifier_splits",
    "cache_dir",
    "load_classifier",
    "train_classifier",
    "load_inception",
    "inception_weights_path",
    "get_extractor",
    "INCEPTION_WEIGHTS_FILE",
]

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
_FORMAT_VERSION = 2  # 2: trained on the dataset's training split (1: a random 80% of all images)


def cache_dir() -> Path:
    """symgen's cache folder: ``$SYMGEN_CACHE`` if set, else ``~/.cache/symgen``."""
    return Path(os.environ.get("SYMGEN_CACHE") or Path.home() / ".cache" / "symgen").expanduser()


def _load_digits(split: str = "all") -> tuple[Tensor, Tensor]:
    """symgen's ``digits`` dataset (sklearn's 1797 handwritten digits) as images ``(N, 1, 8, 8)`` in
    ``[-1, 1]`` and labels ``(N,)``; ``split`` is ``"train"``, ``"test"`` (the default split of
    :func:`symgen.data.digits.load_digits`, the one every digits run uses) or ``"all"``."""
    from symgen.data.digits import load_digits

    data = load_digits(split)
    assert data.y is not None
    return data.x, data.y


CLASSIFIER_DATASETS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {"digits": _load_digits}
"""Loaders ``loader(split)`` of labelled images ``(N, C, H, W)`` in ``[-1, 1]`` with labels ``(N,)`` for the
classifier extractor (``split`` in ``train | test | all``, the same splits the models use); add an entry
to make ``classifier:<name>`` available."""


def classifier_splits(dataset: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of a classifier dataset: the classifier learns from the
    training split only and reports its accuracy on the test split, the images ``fd_clf`` compares
    model samples with."""
    if dataset not in CLASSIFIER_DATASETS:
        raise ValueError(
            f"no classifier dataset '{dataset}'; available: {', '.join(sorted(CLASSIFIER_DATASETS))}"
        )
    loader = CLASSIFIER_DATASETS[dataset]
    return (*loader("train"), *loader("test"))


class SmallCNN(nn.Module):
    """Two 3x3 conv layers, a 2x2 max-pool and two linear layers (digits: about 99% test accuracy).

    ``features`` is the penultimate layer before its ReLU, standardised with the per-feature mean and
    standard deviation over the training images (buffers saved with the weights), so that distances are
    in units of the data's own feature spread and KID's polynomial kernel sees O(1) inputs.
    """

    def __init__(
        self, in_channels: int = 1, image_size: int = 8, num_classes: int = 10, num_features: int = 64
    ):
        super().__init__()
        if image_size < 2 or image_size % 2:
            raise ValueError(f"image_size must be an even int >= 2, got {image_size}")
        self.in_channels, self.image_size, self.num_features = in_channels, image_size, num_features
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.hidden = nn.Linear(32 * (image_size // 2) ** 2, num_features)
        self.head = nn.Linear(num_features, num_classes)
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))

    def raw_features(self, x: Tensor) -> Tensor:
        return self.hidden(self.conv(x))

    def features(self, x: Tensor) -> Tensor:
        return (self.raw_features(x) - self.feature_mean) / self.feature_std

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.raw_features(x)))


def _adapt_images(x: Tensor, channels: int, size: int) -> Tensor:
    """Match channels (RGB <-> grey by mean/repeat) and resize to ``size`` x ``size``: area averaging when
    shrinking (exactly undoes nearest-neighbour upscaling by an integer factor), bilinear when enlarging."""
    if x.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    if x.shape[1] != channels:
        if x.shape[1] == 3 and channels == 1:
            x = x.mean(dim=1, keepdim=True)
        elif x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        else:
            raise ValueError(f"images must have {channels} channels (or 1/3 to convert), got {x.shape[1]}")
    if x.shape[-2] > size or x.shape[-1] > size:
        x = F.interpolate(x, size=(size, size), mode="area")
    elif x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class ClassifierFeatures(nn.Module):
    """Extractor: penultimate :class:`SmallCNN` features of images in ``[-1, 1]`` of any size; ``meta``
    holds the cached record (``dataset``, ``test_accuracy``, ...)."""

    def __init__(self, net: SmallCNN, meta: dict) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.meta = dict(meta)
        self.num_features = net.num_features

    def train(self, mode: bool = True) -> ClassifierFeatures:  # always in eval mode
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        param = next(self.net.parameters())
        x = _adapt_images(x.to(param.device, param.dtype), self.net.in_channels, self.net.image_size)
        return self.net.features(x)


class PixelFeatures(nn.Module):
    """Extractor: flattened pixels."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), -1)


def _fit(net: nn.Module, x: Tensor, y: Tensor, epochs: int) -> None:
    """Adam (lr 3e-3), batch 64, cross-entropy; one CPU thread (tiny convolutions gain nothing from more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(epochs):
            for idx in torch.randperm(len(x)).split(64):
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)


def train_classifier(dataset: str, *, epochs: int = 15, seed: int = 0) -> tuple[SmallCNN, dict]:
    """Train :class:`SmallCNN` on the training split of ``dataset`` (:func:`classifier_splits`; Adam,
    batch 64, seeded initialisation and batch order; the global RNG is left untouched; 2-8 s on a CPU for
    digits), set its feature standardisation from the training images and return it with its metadata,
    including the accuracy on the test split."""
    x_train, y_train, x_test, y_test = classifier_splits(dataset)
    if x_train.dim() != 4 or x_train.shape[-1] != x_train.shape[-2]:
        raise ValueError(
            f"classifier dataset '{dataset}' must give square images (N, C, H, W), got {x_train.shape}"
        )
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(x_train.shape[1], x_train.shape[-1], num_classes)
        _fit(net, x_train, y_train, epochs)
    net.eval()
    with torch.no_grad():
        raw = net.raw_features(x_train)
        net.feature_mean.copy_(raw.mean(dim=0))
        net.feature_std.copy_(raw.std(dim=0).clamp(min=1e-6))
        accuracy = float((net(x_test).argmax(dim=1) == y_test).float().mean())
    meta = {
        "dataset": dataset,
        "train_split": "train",
        "test_accuracy": accuracy,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "epochs": epochs,
        "seed": seed,
        "in_channels": net.in_channels,
        "image_size": net.image_size,
        "num_classes": num_classes,
        "num_features": net.num_features,
        "format_version": _FORMAT_VERSION,
    }
    return net, meta


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same folder and ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _classifier_paths(dataset: str, root: Path | None) -> tuple[Path, Path]:
    folder = (root or cache_dir()) / "classifiers"
    return folder / f"{dataset}.pt", folder / f"{dataset}.json"


def load_classifier(
    dataset: str, *, root: Path | str | None = None, retrain: bool = False
) -> ClassifierFeatures:
    """The ``classifier:<dataset>`` extractor: loaded from the cache, or trained and cached first.

    Weights go to ``<root>/classifiers/<dataset>.pt`` and metadata (with ``test_accuracy``) to
    ``<dataset>.json``, each written atomically (the JSON last, so its presence marks a complete entry).
    ``root`` defaults to :func:`cache_dir`.
    """
    weights, record = _classifier_paths(dataset, Path(root).expanduser() if root else None)
    meta = json.loads(record.read_text()) if record.is_file() and weights.is_file() and not retrain else None
    if meta is None or meta.get("format_version") != _FORMAT_VERSION:
        net, meta = train_classifier(dataset)
        _atomic_write(weights, lambda p: torch.save(net.state_dict(), p))
        _atomic_write(record, lambda p: p.write_text(json.dumps(meta, indent=2)))
    else:
        net = SmallCNN(meta["in_channels"], meta["image_size"], meta["num_classes"], meta["num_features"])
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return ClassifierFeatures(net, meta)


def inception_weights_path() -> Path:
    """Where the Inception-v3 weights are read from: ``$SYMGEN_INCEPTION_WEIGHTS`` or
    ``<cache_dir>/weights/pt_inception-2015-12-05-6726825d.pth``."""
    env = os.environ.get("SYMGEN_INCEPTION_WEIGHTS")
    return Path(env).expanduser() if env else cache_dir() / "weights" / INCEPTION_WEIGHTS_FILE


class InceptionFeatures(nn.Module):
    """Extractor: maps ``[-1, 1]`` images to ``uint8`` RGB and returns the 2048-d Inception pool features."""

    num_features = 2048

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {tuple(x.shape)}")
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return self.net(u8.expand(-1, 3, -1, -1))


def load_inception() -> InceptionFeatures:
    """The ``inception`` extractor; needs ``torch-fidelity`` and a local weights file (never downloads).

    Raises:
        ModuleNotFoundError: ``torch-fidelity`` is not installed.
        FileNotFoundError: the weights are not at :func:`inception_weights_path`.
    """
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ModuleNotFoundError(
            "the 'inception' feature extractor needs the optional package torch-fidelity "
            "(pip install torch-fidelity); use 'classifier:<dataset>' (metric fd_clf) otherwise"
        )
    path = inception_weights_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"Inception-v3 weights not found at {path}; download {INCEPTION_WEIGHTS_FILE} (the "
            "torch-fidelity release of the TF FID Inception) on a machine with network access and put it "
            "there, or point SYMGEN_INCEPTION_WEIGHTS at the file"
        )
    from torchmetrics.image.fid import NoTrainInceptionV3

    net = NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
    )
    return InceptionFeatures(net)


@functools.lru_cache(maxsize=8)
def _cached_extractor(spec: str, root: str) -> nn.Module:
    if spec == "pixels":
        return PixelFeatures()
    if spec == "inception":
        return load_inception()
    return load_classifier(spec.split(":", 1)[1], root=root)


def get_extractor(spec: str | nn.Module) -> nn.Module:
    """Resolve an extractor spec: an ``nn.Module`` is returned as is; the strings ``"pixels"``,
    ``"inception"`` and ``"classifier:<dataset>"`` are built once per process (and cache folder)."""
    if isinstance(spec, nn.Module):
        return spec
    valid = isinstance(spec, str) and (
        spec in ("pixels", "inception") or (spec.startswith("classifier:") and len(spec) > len("classifier:"))
    )
    if not valid:
        raise ValueError(
            f"extractor must be an nn.Module or one of 'pixels', 'inception', 'classifier:<dataset>' "
            f"(datasets: {', '.join(sorted(CLASSIFIER_DATASETS))}), got {spec!r}"
        )
    return _cached_extractor(spec, str(cache_dir()))
