r"""Mode coverage of a 2-D Gaussian mixture (the 25-Gaussians protocol of VEEGAN / PacGAN; dissertation
Sec. 6.4.3, Fig. 6.9), registered as the evaluation ``mode_coverage``.

``n`` model samples (``2500``, the protocol's count) are assigned to their nearest mixture mean. A sample is
*high quality* when it lies within ``3`` standard deviations of that mean; a mode is *covered* when it holds
at
least ``min_count = 20`` high-quality samples (PacGAN: "a mode is lost if fewer than 20 of 2500 samples are
registered to it"). Reported: ``modes_covered`` (of ``K``), ``high_quality`` (share of samples),
``mode_kl`` -- :math:`\mathrm{KL}(\hat p \,\|\, U_K) = \sum_k \hat p_k \log(K \hat p_k)` of the histogram of
high-quality samples over the modes to the uniform (the data's) distribution -- and a scatter plot
``plots/mode_coverage.png`` over the data.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from symgen.registry import EVALS

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["mode_coverage", "eval_mode_coverage"]


def mode_coverage(
    samples: Tensor, means: Tensor, std: float, n_std: float = 3.0, min_count: int = 20
) -> dict[str, float]:
    """Mode statistics of ``samples`` ``(N, 2)`` against mixture ``means`` ``(K, 2)`` of common ``std``."""
    if samples.ndim != 2 or means.ndim != 2 or samples.shape[1] != means.shape[1]:
        raise ValueError(
            f"samples (N, d) and means (K, d) needed, got {tuple(samples.shape)}, {tuple(means.shape)}"
        )
    x, mu = samples.double(), means.double().to(samples.device)
    dist = torch.cdist(x, mu)  # (N, K)
    nearest, idx = dist.min(dim=1)
    good = torch.isfinite(nearest) & (nearest <= n_std * std)
    counts = torch.bincount(idx[good], minlength=len(mu)).double()
    k = len(mu)
    p = counts / counts.sum().clamp(min=1)
    kl = float((p[p > 0] * (p[p > 0] * k).log()).sum()) if counts.sum() > 0 else math.log(k)
    return {
        "modes_covered": float((counts >= min_count).sum()),
        "high_quality": float(good.double().mean()),
        "mode_kl": kl,
    }


@EVALS.register(
    "mode_coverage", help="2-D Gaussian mixtures: modes covered, high-quality share, mode-histogram KL"
)
def eval_mode_coverage(ctx: EvalContext) -> dict[str, float]:
    data = ctx.train
    if not (hasattr(data, "means") and hasattr(data, "std")):
        raise ValueError("mode_coverage needs a Gaussian-mixture dataset (e.g. 25gaussians, 8gaussians)")
    with torch.no_grad():
        x = ctx.model.sample(2500, generator=ctx.generator).detach().cpu()
    out = mode_coverage(x, data.means, float(data.std))
    if ctx.run_dir is not None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 4))
        real = data.sample(2500, generator=torch.Generator().manual_seed(0))
        ax.scatter(real[:, 0], real[:, 1], s=2, c="0.7", label="data")
        ax.scatter(x[:, 0], x[:, 1], s=2, c="tab:blue", label="model")
        (x0, x1), (y0, y1) = data.bounds
        ax.set(xlim=(x0, x1), ylim=(y0, y1), aspect="equal")
        ax.set_title(
            f"{int(out['modes_covered'])} modes, {100 * out['high_quality']:.0f}% high quality", fontsize=9
        )
        ctx.save_figure("mode_coverage", fig)
    return out
