r"""Supervised inpainting (LFBM paper Sec. 4.3, Table 3, Figure 2).

A model trained on complete images completes test images whose centre square is hidden: :math:`z` is
inferred by the test-time chain on the *masked* posterior
:math:`\log p_\alpha(z) - \|m \odot (x - g_\beta(z))\|^2 / 2\sigma^2` and the hidden pixels are read off
:math:`g_\beta(z)`. Several completions per image come from different chain initialisations
:math:`z_0 \sim \mathcal{N}(0, I)`. LFBM-VAE uses the same Langevin chain (its encoder cannot read a
partial image). The score is the MSE on the hidden pixels averaged over images and completions.

Options (``model.tasks``): ``inpaint_size`` (square side / image side; 40/64 in the paper) and
``inpaint_completions``. Registered as ``inpaint_mse``; writes ``images/inpainting.png`` (rows: data,
masked input, one row per completion).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from symgen.data.masks import center_square, square_side
from symgen.metrics.recon import masked_mse
from symgen.registry import EVALS
from symgen.tasks.common import batched, eval_images, interleave_rows, reconstructing_model, task_options

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["inpaint", "eval_inpaint_mse"]


def inpaint(model: object, x: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One completion per image: observed pixels kept, hidden ones (``mask == 0``) read off :math:`g(z)`."""
    x_obs = x * mask  # the hidden pixels never reach the model
    x_hat = model.reconstruct(x_obs, mask, generator=generator)  # type: ignore[attr-defined]
    return mask * x + (1 - mask) * x_hat


@EVALS.register(
    "inpaint_mse", help="MSE on the hidden centre square of inpainted test images (LFBM Sec. 4.3)"
)
def eval_inpaint_mse(ctx: EvalContext) -> dict[str, float]:
    """``{"inpaint_mse": ...}``: hidden-pixel MSE over images and ``inpaint_completions`` chain inits."""
    model = reconstructing_model(ctx, "inpaint_mse")
    opts = task_options(ctx)
    x, _ = eval_images(ctx.test, int(opts["max_images"]), ctx.device)
    side = square_side(float(opts["inpaint_size"]), min(x.shape[-2:]))
    mask = center_square(tuple(x.shape), side, device=x.device)

    def complete(xb: Tensor, mb: Tensor) -> Tensor:
        return inpaint(model, xb, mb, ctx.generator)

    completions = [
        batched(complete, x, mask, batch_size=int(opts["batch_size"]))
        for _ in range(int(opts["inpaint_completions"]))
    ]
    errors = [masked_mse(x, c, mask)[0] for c in completions]
    k = min(8, len(x))
    shown = [x[:k], x[:k] * mask[:k] + (mask[:k] - 1)] + [c[:k] for c in completions]
    ctx.save_images("inpainting", interleave_rows(*shown), nrow=k)
    return {"inpaint_mse": float(sum(errors) / len(errors))}
