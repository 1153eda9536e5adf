r"""Anomaly detection with a held-out class (LFBM paper Sec. 4.4, Table 4).

Protocol (Zenati et al. 2018; Kumar et al. 2019; Pang et al. 2020; the LFBM official code): one class is
the anomaly; the normal images (all other classes) are shuffled and split 80 / 20; the model trains on the
80% part; the test set is the remaining 20% of normal images plus *every* anomalous image. Model selection
(hyperparameters, checkpoints) must not look at the test set, so
:func:`symgen.data.splits.anomaly_splits` carves a validation split of normal images out of the 80% part
(by default 10% of it) -- train, validation and test are disjoint and the test set is exactly the
protocol's.

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

__all__ = ["anomaly_scores", "eval_anomaly_auprc"]


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
