"""Evaluation metrics, each registered in :data:`symgen.registry.METRICS` under its CLI name.

Every registered metric is a function called with keyword arguments drawn from one vocabulary and
returns a ``dict[str, float]`` (one metric may report several numbers, e.g. precision and recall):

==================  ============================================================================
argument            meaning
==================  ============================================================================
``real``            held-out data: images ``(N, C, H, W)`` in ``[-1, 1]`` or points ``(N, D)``
``fake``            model samples, same layout as ``real``
``log_prob``        callable ``(B, 2) -> (B,)``: the model's (unnormalised) log-density
``true_log_prob``   callable ``(B, 2) -> (B,)``: the true (unnormalised) log-density
``bounds``          ``((x_min, x_max), (y_min, y_max))`` box for grid quadrature
``x``, ``x_hat``    data and reconstructions of the same shape
``mask``            bool/0-1 tensor broadcastable to ``x``; True marks masked (hidden) pixels
``scores``          ``(N,)`` anomaly scores, higher = more anomalous
``labels``          ``(N,)`` 0 = normal, 1 = anomaly
==================  ============================================================================

:data:`METRIC_KINDS` says for each name which arguments it requires (``inputs``), which optional keywords
it accepts (``options``), what it returns, and whether higher is better, so the CLI can dispatch;
:func:`compute_metric` does the dispatch from a dict of what a run has available. ``docs/metrics.md``
describes the contracts and how to add a metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from symgen.metrics import anomaly, images, recon, toy
from symgen.metrics.anomaly import auprc, average_precision
from symgen.metrics.images import (
    extract_features,
    frechet_distance,
    image_metrics,
    kernel_distance,
    precision_recall,
)
from symgen.metrics.recon import masked_mse, mse
from symgen.metrics.toy import grid_kl, grid_log_likelihood, mmd2_rbf
from symgen.registry import METRICS

__all__ = [
    "MetricSpec",
    "METRIC_KINDS",
    "compute_metric",
    "grid_log_likelihood",
    "grid_kl",
    "mmd2_rbf",
    "extract_features",
    "frechet_distance",
    "kernel_distance",
    "precision_recall",
    "image_metrics",
    "mse",
    "masked_mse",
    "auprc",
    "average_precision",
    "anomaly",
    "images",
    "recon",
    "toy",
]


@dataclass(frozen=True)
class MetricSpec:
    """What a registered metric needs and returns.

    Attributes:
        kind: ``"samples"`` (data vs model samples), ``"density"`` (model log-density and data),
            ``"density_vs_truth"`` (model and true log-density), ``"reconstruction"`` or ``"scores"``.
        inputs: required keyword arguments (names from the module vocabulary).
        options: optional keyword arguments.
        outputs: keys of the returned dict.
        higher_is_better: for the first output.
    """

    kind: str
    inputs: tuple[str, ...]
    options: tuple[str, ...]
    outputs: tuple[str, ...]
    higher_is_better: bool


_SAMPLES = ("real", "fake")
_CLF = "clf_test_accuracy"

METRIC_KINDS: dict[str, MetricSpec] = {
    "loglik_grid": MetricSpec(
        "density",
        ("log_prob", "real", "bounds"),
        ("resolution",),
        ("loglik_grid", "loglik_grid_quad_err"),
        True,
    ),
    "kl_grid": MetricSpec(
        "density_vs_truth", ("log_prob", "true_log_prob", "bounds"), ("resolution",), ("kl_grid",), False
    ),
    "mmd2": MetricSpec("samples", _SAMPLES, ("bandwidths",), ("mmd2",), False),
    "fd_clf": MetricSpec("samples", _SAMPLES, ("dataset",), ("fd_clf", _CLF), False),
    "kid_clf": MetricSpec(
        "samples", _SAMPLES, ("dataset", "subsets", "subset_size"), ("kid_clf", "kid_clf_std", _CLF), False
    ),
    "pr_clf": MetricSpec("samples", _SAMPLES, ("dataset", "k"), ("precision_clf", "recall_clf", _CLF), True),
    "fid": MetricSpec("samples", _SAMPLES, (), ("fid",), False),
    "kid": MetricSpec("samples", _SAMPLES, ("subsets", "subset_size"), ("kid", "kid_std"), False),
    "pr": MetricSpec("samples", _SAMPLES, ("k",), ("precision", "recall"), True),
    "mse": MetricSpec("reconstruction", ("x", "x_hat"), (), ("mse",), False),
    "mse_masked": MetricSpec(
        "reconstruction", ("x", "x_hat", "mask"), (), ("mse_masked", "mse_unmasked"), False
    ),
    "auprc": MetricSpec("scores", ("scores", "labels"), (), ("auprc",), True),
    "average_precision": MetricSpec("scores", ("scores", "labels"), (), ("average_precision",), True),
}
"""Dispatch table: metric CLI name -> :class:`MetricSpec`."""


def compute_metric(name: str, available: dict[str, Any], **options: Any) -> dict[str, float]:
    """Call metric ``name`` with the inputs it needs taken from ``available`` (extra entries are ignored)
    and the given ``options``; missing inputs or unknown options raise ``ValueError`` naming them."""
    fn = METRICS.get(name)
    spec = METRIC_KINDS[name]
    missing = [key for key in spec.inputs if key not in available]
    if missing:
        raise ValueError(
            f"metric '{name}' ({spec.kind}) needs {', '.join(spec.inputs)}; missing {', '.join(missing)}"
        )
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"metric '{name}' accepts options {spec.options}, got unknown {unknown}")
    return fn(**{key: available[key] for key in spec.inputs}, **options)
