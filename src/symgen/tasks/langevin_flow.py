r"""Evaluations of the Langevin-flow models (short-run EBM, CoopFlow): panels, part KLs, interpolation.

* ``density_panels`` (2-D) -- CoopFlow Fig. 2 / dissertation Figs. 5.3-5.5: the true density, every density
  the model names (``model.named_densities()``: the EBM's :math:`e^{f}` normalised by grid quadrature, the
  flow's :math:`q_\alpha`, the ODE flow's Eq. (5.7)) and its sample sets (``model.named_samples()``: flow
  proposals and revised samples). Picture ``plots/density_panels.png``.
* ``kl_grid_parts`` (2-D) -- :math:`\mathrm{KL}(p_{true}\,\|\,p)` by grid quadrature for each of those
  densities, ``kl_grid_<name>`` (``model.tasks.grid_resolution`` cells per side: the ODE density costs an
  ODE solve per grid point).
* ``interpolation_latent`` (images) -- CoopFlow Sec. 5.4: two test images are encoded by inverting the
  generator (``model.encode``: :math:`z = g_\alpha^{-1}(\hat x^*)` for CoopFlow, the chain's start
  :math:`x_0^*` for the short-run EBM), the latents are interpolated linearly and decoded
  (``model.decode``). Picture ``images/interpolation_latent.png`` (one row per pair; the end columns are
  the reconstructions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from symgen.metrics.toy import grid_kl, midpoint_grid
from symgen.registry import EVALS
from symgen.tasks.common import eval_images, task_options
from symgen.tasks.interpolate import base_space_path

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["eval_density_panels", "eval_kl_grid_parts", "eval_interpolation_latent", "grid_density"]

_PAIRS, _STEPS = 6, 8


def _toy_model(ctx: EvalContext, evaluation: str) -> Any:
    if not callable(getattr(ctx.model, "named_densities", None)) or not hasattr(ctx.train, "log_prob"):
        raise ValueError(
            f"evaluation '{evaluation}' needs a 2-D Langevin-flow model (short_run_ebm, coopflow) on a toy "
            "distribution with a known density"
        )
    return ctx.model


def _resolution(ctx: EvalContext) -> int:
    return int(task_options(ctx).get("grid_resolution", 128))


def grid_density(log_prob: Any, bounds: Any, n: int) -> torch.Tensor:
    """``(n, n)`` density normalised on an ``n`` x ``n`` midpoint grid over ``bounds`` (rows: x, cols: y)."""
    grid, area = midpoint_grid(bounds, n)
    out = []
    for chunk in grid.split(8192):
        out.append(log_prob(chunk).detach().double())
    lp = torch.cat(out)
    return (torch.log_softmax(lp, 0).exp() / area).reshape(n, n)


@EVALS.register("density_panels", help="picture: true density, the model's densities and samples (2-D)")
def eval_density_panels(ctx: EvalContext) -> dict[str, float]:
    import matplotlib.pyplot as plt

    model = _toy_model(ctx, "density_panels")
    n = _resolution(ctx)
    bounds = ctx.train.bounds
    dens = {"true": ctx.train.log_prob, **model.named_densities()}
    with torch.no_grad():
        samples = {k: v.cpu() for k, v in model.named_samples(2000, ctx.generator).items()}
    cols = len(dens) + len(samples)
    fig, axes = plt.subplots(1, cols, figsize=(3 * cols, 3))
    (x0, x1), (y0, y1) = bounds
    for ax, (name, fn) in zip(axes, dens.items()):
        d = grid_density(fn, bounds, n)
        ax.imshow(d.T.numpy(), origin="lower", extent=(x0, x1, y0, y1), cmap="viridis", aspect="auto")
        ax.set_title(f"{name} density")
    for ax, (name, x) in zip(axes[len(dens) :], samples.items()):
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=1, alpha=0.5)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(f"{name} samples")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    ctx.save_figure("density_panels", fig)
    return {}


@EVALS.register(
    "kl_grid_parts", help="KL(true || p) by grid quadrature for each density of a Langevin-flow model (2-D)"
)
def eval_kl_grid_parts(ctx: EvalContext) -> dict[str, float]:
    model = _toy_model(ctx, "kl_grid_parts")
    n = _resolution(ctx)
    out = {}
    for name, fn in model.named_densities().items():
        out[f"kl_grid_{name}"] = grid_kl(fn, ctx.train.log_prob, ctx.train.bounds, n, chunk_size=8192)
    return out


@EVALS.register(
    "interpolation_latent",
    help="picture: decoded linear paths between the inverted latents of two test images (CoopFlow Sec. 5.4)",
)
def eval_interpolation_latent(ctx: EvalContext) -> dict[str, float]:
    model = ctx.model
    if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
        raise ValueError("interpolation_latent needs a model with encode/decode (short_run_ebm, coopflow)")
    x, _ = eval_images(ctx.test, 2 * _PAIRS, ctx.device)
    pairs = len(x) // 2
    if pairs == 0:
        raise ValueError("interpolation_latent needs at least two test images")
    z, _ = model.encode(x[: 2 * pairs], generator=ctx.generator)
    flat = z.flatten(1)
    path = base_space_path(flat[:pairs], flat[pairs : 2 * pairs], _STEPS)
    images = model.decode(path.reshape(-1, *z.shape[1:]))
    ends = torch.stack([x[:pairs], x[pairs : 2 * pairs]], 1)  # data beside the path: first and last column
    rows = torch.cat([ends[:, :1], images.reshape(pairs, _STEPS, *x.shape[1:]), ends[:, 1:]], 1)
    ctx.save_images("interpolation_latent", rows.reshape(-1, *x.shape[1:]).clamp(-1, 1), nrow=_STEPS + 2)
    return {}
