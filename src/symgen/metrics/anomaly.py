"""Anomaly-detection scores: area under the precision-recall curve (AUPRC) and average precision.

The anomaly-detection literature that the NT-EBM/LEBM papers follow reports AUPRC as the trapezoidal
area under ``sklearn.metrics.precision_recall_curve`` (``sklearn.metrics.auc(recall, precision)``);
``average_precision_score`` (a step-wise sum, no interpolation) is the more conservative variant. Both
are computed by scikit-learn here; this module only fixes the conventions: anomalies are the positive
class (label 1) and a *higher* score means *more anomalous* (e.g. energy or negative log-likelihood).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from symgen.registry import METRICS

__all__ = ["auprc", "average_precision"]


def _to_numpy(scores: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = scores.detach().cpu().double().numpy() if isinstance(scores, Tensor) else np.asarray(scores, float)
    y = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got shapes {s.shape} and {y.shape}")
    if not np.isin(y, (0, 1)).all() or len(np.unique(y)) != 2:
        raise ValueError("labels must be 0 (normal) / 1 (anomaly) and contain both classes")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return s, y.astype(int)


def auprc(scores: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> float:
    """Trapezoidal area under the precision-recall curve of ``sklearn.metrics.precision_recall_curve``.

    Arguments:
        scores: ``(N,)`` anomaly scores, higher = more anomalous.
        labels: ``(N,)`` with 1 for anomalies, 0 for normal points.
    """
    from sklearn.metrics import auc, precision_recall_curve

    s, y = _to_numpy(scores, labels)
    precision, recall, _ = precision_recall_curve(y, s)
    return float(auc(recall, precision))


def average_precision(scores: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> float:
    r"""Average precision :math:`\sum_n (R_n-R_{n-1})P_n` (``sklearn.metrics.average_precision_score``),
    with the conventions of :func:`auprc`."""
    from sklearn.metrics import average_precision_score

    s, y = _to_numpy(scores, labels)
    return float(average_precision_score(y, s))


@METRICS.register("auprc", "area under the precision-recall curve (trapezoidal), anomalies = label 1")
def _auprc_metric(scores: Tensor, labels: Tensor) -> dict[str, float]:
    return {"auprc": auprc(scores, labels)}


@METRICS.register("average_precision", "average precision of anomaly scores, anomalies = label 1")
def _average_precision_metric(scores: Tensor, labels: Tensor) -> dict[str, float]:
    return {"average_precision": average_precision(scores, labels)}
