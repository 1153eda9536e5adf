r"""The learned prior against the aggregated posterior in latent space (LFBM paper Sec. 3.4, Eq. (13)).

Maximum likelihood drives the prior :math:`p_\alpha(z)` towards the aggregated posterior
:math:`\tilde p(z) = \mathbb{E}_{p_{\text{data}}(x)}[p_\theta(z|x)]`. This evaluation infers the latents
of the test images (the aggregated posterior's samples), draws as many latents from the prior, projects
both on the two leading principal axes of the posterior latents and plots them side by side
(``plots/latent_density.png``). It reports ``latent_mmd2``, the squared MMD between the two sets in the
full latent space (RBF mixture kernel, :func:`symgen.metrics.mmd2_rbf`): smaller means the prior matches
the aggregated posterior better.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from symgen.metrics.toy import mmd2_rbf
from symgen.registry import EVALS
from symgen.tasks.common import batched, eval_images, latent_model, task_options

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["principal_axes", "eval_latent_density"]


def principal_axes(z: Tensor, k: int = 2) -> tuple[Tensor, Tensor]:
    """Mean ``(d,)`` and the ``k`` leading principal axes ``(d, k)`` of the rows of ``z`` (SVD)."""
    mean = z.mean(0)
    _, _, vh = torch.linalg.svd(z - mean, full_matrices=False)
    return mean, vh[:k].T


def _plot(ctx: EvalContext, post: Tensor, prior: Tensor, labels: Tensor | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = torch.minimum(post.min(0).values, prior.min(0).values).numpy()
    hi = torch.maximum(post.max(0).values, prior.max(0).values).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    axes[0].hist2d(prior[:, 0].numpy(), prior[:, 1].numpy(), bins=40, range=[[lo[0], hi[0]], [lo[1], hi[1]]])
    axes[0].set_title("prior samples p(z)")
    colors = None if labels is None else labels.numpy()
    axes[1].scatter(post[:, 0].numpy(), post[:, 1].numpy(), c=colors, s=6, cmap="tab10")
    axes[1].set_title("inferred latents of test images")
    for ax in axes:
        ax.set_xlabel("PC 1")
    axes[0].set_ylabel("PC 2")
    ctx.save_figure("latent_density", fig)


@EVALS.register(
    "latent_density", help="picture + MMD: prior samples vs inferred latents (aggregated posterior)"
)
def eval_latent_density(ctx: EvalContext) -> dict[str, float]:
    model = latent_model(ctx, "latent_density")
    opts = task_options(ctx)
    x, y = eval_images(ctx.test, int(opts["max_images"]), ctx.device)

    def infer(xb: Tensor) -> Tensor:
        return model.infer(xb, test=True, generator=ctx.generator)

    z_post = batched(infer, x, batch_size=int(opts["batch_size"])).cpu()
    with torch.no_grad():
        z_prior = model.prior.sample(len(z_post), generator=ctx.generator).cpu()
    mean, axes = principal_axes(z_post)
    _plot(ctx, (z_post - mean) @ axes, (z_prior - mean) @ axes, y)
    return {"latent_mmd2": mmd2_rbf(z_post, z_prior)}
