r"""Reconstruction (LFBM paper Sec. 4.2, Table 2): per-pixel MSE of :math:`g_\beta(z)` with :math:`z`
inferred from each held-out image by the model's test-time inference.

Images are in ``[-1, 1]`` (the official code's scale). Registered as the evaluation ``recon_mse``; writes
``images/reconstructions.png`` (odd rows: data, even rows: reconstructions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from symgen.metrics.recon import mse
from symgen.registry import EVALS
from symgen.tasks.common import batched, eval_images, interleave_rows, reconstructing_model, task_options

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["eval_recon_mse"]


@EVALS.register("recon_mse", help="per-pixel MSE of reconstructions of test images (LFBM Table 2)")
def eval_recon_mse(ctx: EvalContext) -> dict[str, float]:
    """``{"recon_mse": ...}`` on up to ``model.tasks.max_images`` test images."""
    model = reconstructing_model(ctx, "recon_mse")
    opts = task_options(ctx)
    x, _ = eval_images(ctx.test, int(opts["max_images"]), ctx.device)

    def rec(xb: Tensor) -> Tensor:
        return model.reconstruct(xb, generator=ctx.generator)

    x_hat = batched(rec, x, batch_size=int(opts["batch_size"]))
    k = min(8, len(x))
    rows = [r for i in range(0, min(32, len(x)), k) for r in (x[i : i + k], x_hat[i : i + k])]
    ctx.save_images("reconstructions", interleave_rows(*rows), nrow=k)
    return {"recon_mse": mse(x, x_hat)}
