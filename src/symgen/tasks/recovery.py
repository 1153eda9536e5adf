r"""Unsupervised recovery of occluded training images (LFBM paper Sec. 4.6, Table 5, Figure 4).

The model is trained on images it only ever sees through fixed occlusion masks (``model.occlusion``:
salt-and-pepper at 30/50/70% or a randomly placed square of side 20/30/40 out of 64, scaled to the image
size), with the likelihood of the visible pixels only. As training proceeds the hidden pixels of the
*training* images are recovered as :math:`g_\beta(z)` with :math:`z` inferred from the visible pixels;
the score is the MSE between recovered and true pixels on the hidden region. Run it with
``train.eval_every`` to record the curve in ``metrics.jsonl``.

Registered as ``recovery_mse``; writes ``images/recovery.png`` (rows: data, occluded input, recovered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from symgen.metrics.recon import masked_mse
from symgen.registry import EVALS
from symgen.tasks.common import batched, eval_images, interleave_rows, latent_model, task_options
from symgen.tasks.inpaint import inpaint
from symgen.tasks.occlusion import OcclusionSpec, occlusion_mask

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["eval_recovery_mse"]


@EVALS.register("recovery_mse", help="MSE on the hidden pixels of occluded training images (LFBM Table 5)")
def eval_recovery_mse(ctx: EvalContext) -> dict[str, float]:
    """``{"recovery_mse": ...}`` on up to ``model.tasks.max_images`` training images."""
    model = latent_model(ctx, "recovery_mse")
    spec = OcclusionSpec.from_config(ctx.cfg["model"].get("occlusion") or {})
    if not spec.active:
        raise ValueError("recovery_mse needs a run trained on occluded data (model.occlusion.kind != none)")
    opts = task_options(ctx)
    x, _ = eval_images(ctx.train, int(opts["max_images"]), ctx.device)
    mask = occlusion_mask(x, spec)  # the very masks the model was trained with

    def recover(xb: Tensor, mb: Tensor) -> Tensor:
        return inpaint(model, xb, mb, ctx.generator)

    x_hat = batched(recover, x, mask, batch_size=int(opts["batch_size"]))
    k = min(8, len(x))
    ctx.save_images("recovery", interleave_rows(x[:k], x[:k] * mask[:k] + (mask[:k] - 1), x_hat[:k]), nrow=k)
    return {"recovery_mse": masked_mse(x, x_hat, mask == 0)[0]}
