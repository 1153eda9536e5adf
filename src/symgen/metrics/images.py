r"""Sample-quality metrics for images in a feature space: Fréchet distance, kernel distance (KID) and
improved precision/recall, with a pluggable feature extractor (see :mod:`symgen.metrics.features`).

Features are extracted once per image set; the Fréchet and kernel distances are then computed by
``torchmetrics`` (``FrechetInceptionDistance`` / ``KernelInceptionDistance`` fed through an identity
"extractor", so any feature space works). Improved precision/recall (Kynkäänniemi et al., NeurIPS 2019,
arXiv:1904.06991) is hand-written because torchmetrics does not offer it.

Names matter: a Fréchet distance in the features of symgen's small classifier is reported as ``fd_clf``,
never as ``fid``, which is reserved for Inception-v3 features. Report the extractor and the sample sizes
with every number: these estimators are biased in the number of samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from symgen.metrics.features import get_extractor
from symgen.registry import METRICS

__all__ = [
    "extract_features",
    "frechet_distance",
    "kernel_distance",
    "precision_recall",
    "image_metrics",
]


class _Identity(nn.Module):
    """Pass-through "extractor" so that torchmetrics' image metrics accept precomputed features."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def _check_features(real: Tensor, fake: Tensor, min_samples: int = 2) -> tuple[Tensor, Tensor]:
    if not isinstance(real, Tensor) or not isinstance(fake, Tensor) or real.dim() != 2 or fake.dim() != 2:
        raise ValueError("features must be tensors of shape (N, d) and (M, d)")
    if real.shape[1] != fake.shape[1] or len(real) < min_samples or len(fake) < min_samples:
        raise ValueError(
            f"features must share d and hold >= {min_samples} rows each, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    return real.detach().to("cpu", torch.float64), fake.detach().to("cpu", torch.float64)


def extract_features(images: Tensor, extractor: str | nn.Module, *, batch_size: int = 256) -> Tensor:
    """Features ``(N, d)`` (float64, CPU) of images ``(N, C, H, W)`` in ``[-1, 1]``, computed in batches
    without gradients on the extractor's device (the images' device for parameter-free extractors)."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(
            f"images must be a tensor of shape (N, C, H, W) in [-1, 1], got {type(images).__name__}"
        )
    net = get_extractor(extractor)
    param = next(net.parameters(), None)
    device = param.device if param is not None else images.device
    with torch.no_grad():
        feats = [net(batch.to(device)).reshape(len(batch), -1) for batch in images.split(batch_size)]
    return torch.cat(feats).to("cpu", torch.float64)


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    r"""Fréchet distance :math:`\|\mu_r-\mu_f\|^2+\mathrm{tr}(\Sigma_r+\Sigma_f-2(\Sigma_r\Sigma_f)^{1/2})`
    between Gaussians fitted to two feature sets ``(N, d)`` and ``(M, d)`` (Heusel et al. 2017, Eq. 6),
    computed in float64 by ``torchmetrics.image.fid.FrechetInceptionDistance``.

    The metric is built without ``normalize=True``: that flag tells torchmetrics the inputs are float
    images in ``[0, 1]``, and before torchmetrics 1.4 it cast them with ``(imgs * 255).byte()`` even when the
    "images" were custom features, silently quantising (and wrapping negative) features."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _check_features(real, fake)
    metric = FrechetInceptionDistance(feature=_Identity(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_distance(
    real: Tensor,
    fake: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    r"""Kernel (Inception) distance of Bińkowski et al. (2018): the unbiased MMD² with the polynomial kernel
    :math:`(x^\top y/d+1)^3`, averaged over ``subsets`` random subsets of ``min(subset_size, N, M)`` rows,
    by ``torchmetrics.image.kid.KernelInceptionDistance``. The subsets are drawn from a private RNG seeded
    with ``seed`` (the global RNG is untouched).

    Returns:
        ``(mean, std)`` over subsets.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _check_features(real, fake)
    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=_Identity(real.shape[1]), subsets=subsets, subset_size=size, degree=degree
        )
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def _kth_neighbour_radius(feats: Tensor, k: int, chunk: int) -> Tensor:
    """Distance from every row to its ``k``-th nearest other row."""
    radii = [
        torch.cdist(block, feats).topk(k + 1, dim=1, largest=False).values[:, k]
        for block in feats.split(chunk)
    ]
    return torch.cat(radii)


def _inside_manifold(query: Tensor, ref: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """Whether each query row lies in at least one ball ``B(ref_i, radii_i)``."""
    return torch.cat([(torch.cdist(block, ref) <= radii).any(dim=1) for block in query.split(chunk)])


def precision_recall(real: Tensor, fake: Tensor, *, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    r"""Improved precision and recall (Kynkäänniemi et al. 2019, Eqs. 1-3).

    The real manifold is the union of balls around each real feature with radius its distance to the
    ``k``-th nearest real neighbour; precision is the fraction of fake features inside it. Recall swaps the
    roles. Both lie in ``[0, 1]``; precision measures fidelity, recall coverage.

    Arguments:
        real, fake: features ``(N, d)`` and ``(M, d)`` with ``N, M > k``.
        k: neighbourhood size (3 in the paper).

    Returns:
        ``(precision, recall)``.
    """
    if k < 1:
        raise ValueError(f"k must be a positive int, got {k}")
    real, fake = _check_features(real, fake, min_samples=k + 1)
    precision = _inside_manifold(fake, real, _kth_neighbour_radius(real, k, chunk), chunk).double().mean()
    recall = _inside_manifold(real, fake, _kth_neighbour_radius(fake, k, chunk), chunk).double().mean()
    return float(precision), float(recall)


def image_metrics(
    real: Tensor,
    fake: Tensor,
    extractor: str | nn.Module,
    which: Sequence[str] = ("fd", "kid", "pr"),
    *,
    k: int = 3,
    subsets: int = 100,
    subset_size: int = 1000,
    batch_size: int = 256,
) -> dict[str, float]:
    """Extract features of ``real`` and ``fake`` images ``(N, C, H, W)`` in ``[-1, 1]`` once and compute the
    requested metrics: ``fd`` -> ``{"fd"}``, ``kid`` -> ``{"kid", "kid_std"}``, ``pr`` ->
    ``{"precision", "recall"}``."""
    unknown = set(which) - {"fd", "kid", "pr"}
    if unknown:
        raise ValueError(f"which must be a subset of ('fd', 'kid', 'pr'), got unknown {sorted(unknown)}")
    f_real = extract_features(real, extractor, batch_size=batch_size)
    f_fake = extract_features(fake, extractor, batch_size=batch_size)
    out: dict[str, float] = {}
    if "fd" in which:
        out["fd"] = frechet_distance(f_real, f_fake)
    if "kid" in which:
        out["kid"], out["kid_std"] = kernel_distance(f_real, f_fake, subsets=subsets, subset_size=subset_size)
    if "pr" in which:
        out["precision"], out["recall"] = precision_recall(f_real, f_fake, k=k)
    return out


def _clf_accuracy(dataset: str) -> float:
    return float(get_extractor(f"classifier:{dataset}").meta["test_accuracy"])


@METRICS.register("fd_clf", "Fréchet distance in symgen's classifier features (not an Inception FID)")
def _fd_clf_metric(real: Tensor, fake: Tensor, *, dataset: str = "digits") -> dict[str, float]:
    value = image_metrics(real, fake, f"classifier:{dataset}", ("fd",))["fd"]
    return {"fd_clf": value, "clf_test_accuracy": _clf_accuracy(dataset)}


@METRICS.register("kid_clf", "kernel distance (KID) in symgen's classifier features")
def _kid_clf_metric(
    real: Tensor, fake: Tensor, *, dataset: str = "digits", subsets: int = 100, subset_size: int = 1000
) -> dict[str, float]:
    out = image_metrics(
        real, fake, f"classifier:{dataset}", ("kid",), subsets=subsets, subset_size=subset_size
    )
    return {"kid_clf": out["kid"], "kid_clf_std": out["kid_std"], "clf_test_accuracy": _clf_accuracy(dataset)}


@METRICS.register("pr_clf", "improved precision/recall (k-NN manifolds) in symgen's classifier features")
def _pr_clf_metric(real: Tensor, fake: Tensor, *, dataset: str = "digits", k: int = 3) -> dict[str, float]:
    out = image_metrics(real, fake, f"classifier:{dataset}", ("pr",), k=k)
    return {
        "precision_clf": out["precision"],
        "recall_clf": out["recall"],
        "clf_test_accuracy": _clf_accuracy(dataset),
    }


@METRICS.register("fid", "Fréchet Inception distance (needs torch-fidelity and local Inception weights)")
def _fid_metric(real: Tensor, fake: Tensor) -> dict[str, float]:
    return {"fid": image_metrics(real, fake, "inception", ("fd",))["fd"]}


@METRICS.register("kid", "kernel Inception distance (needs torch-fidelity and local Inception weights)")
def _kid_metric(
    real: Tensor, fake: Tensor, *, subsets: int = 100, subset_size: int = 1000
) -> dict[str, float]:
    return image_metrics(real, fake, "inception", ("kid",), subsets=subsets, subset_size=subset_size)


@METRICS.register("pr", "improved precision/recall in Inception features (needs torch-fidelity + weights)")
def _pr_metric(real: Tensor, fake: Tensor, *, k: int = 3) -> dict[str, float]:
    return image_metrics(real, fake, "inception", ("pr",), k=k)
