r"""Anomaly detection with a held-out class (LFBM paper Sec. 4.4, Table 4).

Protocol (Zenati et al. 2018; Kumar et al. 2019; Pang et al. 2020; the LFBM official code): one class is
the anomaly; the normal images (all other classes) are shuffled and split 80 / 20; the model trains on the
80% part; the test set is the remaining 20% of normal images plus *every* anomalous image. Model selection
(hyperparameters, checkpoints) must not look at the test set, so :func:`anomaly_splits` carves a
validation split of normal images out of the 80% part (by default 10% of it) -- train, validation and
test are disjoint and the test set is exactly the protocol's.

Score: :math:`z` is inferred by the test-time chain and the decision function is the log joint
:math:`\log p_\theta(x, z) = l_\alpha(z) - \|x - g_\beta(z)\|^2/2\sigma^2 - D\log(\sigma\sqrt{2\pi})`; the
anomaly score is its negative and AUPRC treats anomalies as the positive class (as the official code).
Registered as ``anomaly_auprc``; it also reports ``anomaly_val_score`` (mean anomaly score of the normal
validation images: lower is better, usable for model selection) and plots the score histograms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from symgen.metrics.anomaly import auprc
from symgen.registry import EVALS
from symgen.tasks.common import batched, latent_model, task_options

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["anomaly_splits", "anomaly_scores", "eval_anomaly_auprc"]


def anomaly_splits(
    full: Any, holdout_class: int, seed: int = 0, train_fraction: float = 0.8, val_fraction: float = 0.1
) -> tuple[Any, Any, Any]:
    """Split a labelled dataset into ``(train, val, test)`` for the held-out-class protocol.

    Arguments:
        full: an ``ImageData`` with labels (every image of the dataset).
        holdout_class: the anomalous class.
        seed: seed of the shuffle of the normal images.
        train_fraction: share of the normal images used for training + validation (0.8 in the papers).
        val_fraction: share of that part kept for validation (model selection).

    Returns:
        ``train`` and ``val`` hold only normal images; ``test`` holds the other normal images and every
        image of ``holdout_class``. Index sets are disjoint; each split keeps the dataset's order.
    """
    y = getattr(full, "y", None)
    if y is None:
        raise ValueError("anomaly_splits needs a labelled dataset (ImageData with y)")
    classes = torch.unique(y).tolist()
    if holdout_class not in classes:
        raise ValueError(
            f"holdout_class must be one of the dataset's classes {classes}, got {holdout_class!r}"
        )
    if not 0 < train_fraction < 1 or not 0 <= val_fraction < 1:
        raise ValueError(
            f"need 0 < train_fraction < 1 and 0 <= val_fraction < 1, got {train_fraction}, {val_fraction}"
        )
    normal = torch.nonzero(y != holdout_class).squeeze(1)
    anomalous = torch.nonzero(y == holdout_class).squeeze(1)
    perm = normal[torch.randperm(len(normal), generator=torch.Generator().manual_seed(int(seed)))]
    n_fit = int(train_fraction * len(normal))
    n_val = int(round(val_fraction * n_fit))
    val_idx, train_idx, test_normal = perm[:n_val], perm[n_val:n_fit], perm[n_fit:]
    test_idx = torch.cat([test_normal, anomalous])
    return tuple(full.subset(torch.sort(i).values) for i in (train_idx, val_idx, test_idx))  # type: ignore[return-value]


def anomaly_scores(
    model: Any, x: Tensor, generator: torch.Generator | None = None, batch_size: int = 500
) -> Tensor:
    """Anomaly scores :math:`-\\log p_\\theta(x, z)` with :math:`z` from the test-time inference, ``(N,)``."""

    def score(xb: Tensor) -> Tensor:
        z = model.infer(xb, test=True, generator=generator)
        with torch.no_grad():
            return -model.log_joint(xb, z)

    return batched(score, x, batch_size=batch_size)


def _histogram(ctx: EvalContext, normal: Tensor, anomalous: Tensor) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = torch.linspace(
        float(torch.cat([normal, anomalous]).min()), float(torch.cat([normal, anomalous]).max()), 40
    )
    ax.hist(normal.cpu().numpy(), bins=bins.numpy(), alpha=0.6, density=True, label="normal")
    ax.hist(anomalous.cpu().numpy(), bins=bins.numpy(), alpha=0.6, density=True, label="anomaly")
    ax.set_xlabel("anomaly score  -log p(x, z)")
    ax.legend()
    ctx.save_figure("anomaly_scores", fig)


@EVALS.register("anomaly_auprc", help="AUPRC of -log p(x, z) with a held-out anomalous class (LFBM Table 4)")
def eval_anomaly_auprc(ctx: EvalContext) -> dict[str, float]:
    """``{"anomaly_auprc", "anomaly_val_score"}`` on the protocol's test and validation splits."""
    model = latent_model(ctx, "anomaly_auprc")
    holdout = ctx.cfg["data"].get("holdout_class")
    if holdout is None:
        raise ValueError("anomaly_auprc needs data.holdout_class (the anomalous class) in the run's config")
    opts = task_options(ctx)
    bs = int(opts["batch_size"])
    x, y = ctx.test.x.to(ctx.device), ctx.test.y
    labels = (y == int(holdout)).long()
    scores = anomaly_scores(model, x, ctx.generator, bs).cpu()
    out = {"anomaly_auprc": auprc(scores, labels)}
    if ctx.val is not None and len(ctx.val) > 0:
        out["anomaly_val_score"] = float(
            anomaly_scores(model, ctx.val.x.to(ctx.device), ctx.generator, bs).mean()
        )
    _histogram(ctx, scores[labels == 0], scores[labels == 1])
    return out
