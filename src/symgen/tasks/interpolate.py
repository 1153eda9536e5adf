r"""Latent interpolation between held-out images (LFBM official code's ``print_intepolation``).

The latents :math:`z_a, z_b` of two test images are inferred by the test-time chain, mapped to the
prior's base space (:math:`f_\alpha^{-1}` for a flow prior, identity otherwise), interpolated linearly
there, mapped back and decoded. With a flow prior the path therefore follows the learned latent density
instead of cutting through its low-density regions. Registered as ``interpolation`` (a picture,
``images/interpolation.png``: one row per pair, end points are the reconstructions); returns ``{}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from symgen.registry import EVALS
from symgen.tasks.common import eval_images, latent_model

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["interpolate_latents", "eval_interpolation"]


@torch.no_grad()
def interpolate_latents(prior: torch.nn.Module, z_a: Tensor, z_b: Tensor, steps: int) -> Tensor:
    """``(n, steps, d)`` latents on the base-space segment from ``z_a`` to ``z_b`` (both ``(n, d)``)."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps!r}")
    u_a, u_b = prior.to_base(z_a), prior.to_base(z_b)  # type: ignore[operator]
    t = torch.linspace(0, 1, steps, device=z_a.device)[None, :, None]
    path = (1 - t) * u_a[:, None] + t * u_b[:, None]
    return prior.from_base(path.reshape(-1, z_a.shape[1])).reshape(len(z_a), steps, -1)  # type: ignore[operator]


@EVALS.register("interpolation", help="picture: decoded latent interpolations between test images")
def eval_interpolation(ctx: EvalContext) -> dict[str, float]:
    model = latent_model(ctx, "interpolation")
    n_pairs, steps = 8, 10
    x, _ = eval_images(ctx.test, 2 * n_pairs, ctx.device)
    n_pairs = len(x) // 2
    if n_pairs == 0:
        raise ValueError("interpolation needs at least two test images")
    z = model.infer(x[: 2 * n_pairs], test=True, generator=ctx.generator)
    path = interpolate_latents(model.prior, z[:n_pairs], z[n_pairs : 2 * n_pairs], steps)
    with torch.no_grad():
        images = model.generator(path.reshape(-1, path.shape[-1]))
    ctx.save_images("interpolation", images, nrow=steps)
    return {}
