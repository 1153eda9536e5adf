r"""Latent interpolations, two of them, each named for what it interpolates between.

* ``interpolation_prior`` -- the LFBM official code's ``print_intepolation`` (``train_mnist.py`` in the
  history of ``jianwen-xie/Latent-Space-Normalizing-Flow``): two base draws
  :math:`u_a, u_b \sim \mathcal{N}(0, I)`, the segment :math:`(1-t)u_a + t u_b` between them, pushed
  through the prior's map :math:`z = f_\alpha(u)` (identity for the Gaussian and EBM priors) and decoded.
  Both end points are prior samples; nothing is inferred.
* ``interpolation_posterior`` -- between held-out images: the latents :math:`z_a, z_b` of two test images
  are inferred by the test-time chain, mapped to the base space (:math:`f_\alpha^{-1}` for a flow prior,
  identity otherwise), interpolated linearly there, mapped back and decoded (end points are the
  reconstructions). symgen's addition; the official code has no such picture.

With a flow prior both paths follow the learned latent density instead of cutting through its
low-density regions. Each is a picture (``images/interpolation_prior.png`` /
``images/interpolation_posterior.png``, one row per pair) and returns ``{}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from symgen.models.priors import randn_on
from symgen.registry import EVALS
from symgen.tasks.common import eval_images, latent_model

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = [
    "base_space_path",
    "interpolate_latents",
    "prior_interpolation",
    "eval_interpolation_prior",
    "eval_interpolation_posterior",
]

_PAIRS, _STEPS = 8, 10


def base_space_path(u_a: Tensor, u_b: Tensor, steps: int) -> Tensor:
    """``(n, steps, d)``: the points ``(1 - t) u_a + t u_b``, ``t = 0, 1/(steps-1), ..., 1``."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps!r}")
    t = torch.linspace(0, 1, steps, device=u_a.device, dtype=u_a.dtype)[None, :, None]
    return (1 - t) * u_a[:, None] + t * u_b[:, None]


@torch.no_grad()
def interpolate_latents(prior: torch.nn.Module, z_a: Tensor, z_b: Tensor, steps: int) -> Tensor:
    """``(n, steps, d)`` latents on the base-space segment from ``z_a`` to ``z_b`` (both ``(n, d)``)."""
    path = base_space_path(prior.to_base(z_a), prior.to_base(z_b), steps)  # type: ignore[operator]
    return prior.from_base(path.reshape(-1, z_a.shape[1])).reshape(len(z_a), steps, -1)  # type: ignore[operator]


@torch.no_grad()
def prior_interpolation(
    prior: torch.nn.Module, n: int, steps: int, generator: torch.Generator | None = None
) -> Tensor:
    """``(n, steps, d)`` latents: segments between pairs of base draws ``u_a, u_b ~ N(0, I)`` (drawn in
    that order, ``u_a`` then ``u_b``), pushed through ``prior.from_base`` (official
    ``print_intepolation``)."""
    d = int(prior.latent_dim)  # type: ignore[arg-type]
    device = prior.device  # type: ignore[attr-defined]
    u_a = randn_on((n, d), generator, device)
    u_b = randn_on((n, d), generator, device)
    path = base_space_path(u_a, u_b, steps)
    return prior.from_base(path.reshape(-1, d)).reshape(n, steps, d)  # type: ignore[operator]


@EVALS.register(
    "interpolation_prior",
    help="picture: decoded paths between two N(0, I) base draws pushed through the prior (official code)",
)
def eval_interpolation_prior(ctx: EvalContext) -> dict[str, float]:
    model = latent_model(ctx, "interpolation_prior")
    path = prior_interpolation(model.prior, _PAIRS, _STEPS, ctx.generator)
    with torch.no_grad():
        images = model.generator(path.reshape(-1, path.shape[-1]))
    ctx.save_images("interpolation_prior", images, nrow=_STEPS)
    return {}


@EVALS.register(
    "interpolation_posterior",
    help="picture: decoded base-space paths between the inferred latents of two test images",
)
def eval_interpolation_posterior(ctx: EvalContext) -> dict[str, float]:
    model = latent_model(ctx, "interpolation_posterior")
    x, _ = eval_images(ctx.test, 2 * _PAIRS, ctx.device)
    n_pairs = len(x) // 2
    if n_pairs == 0:
        raise ValueError("interpolation_posterior needs at least two test images")
    z = model.infer(x[: 2 * n_pairs], test=True, generator=ctx.generator)
    path = interpolate_latents(model.prior, z[:n_pairs], z[n_pairs : 2 * n_pairs], _STEPS)
    with torch.no_grad():
        images = model.generator(path.reshape(-1, path.shape[-1]))
    ctx.save_images("interpolation_posterior", images, nrow=_STEPS)
    return {}
