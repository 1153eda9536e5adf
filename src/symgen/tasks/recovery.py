r"""Unsupervised recovery of occluded training images (LFBM paper Sec. 4.6, Tables 5-6, Figure 4).

The model is trained on images it only ever sees through fixed occlusion masks (``model.occlusion``:
salt-and-pepper at 30/50/70% -- per pixel, or the official code's 8x8 ``patches`` -- or a randomly placed
square of side 20/30/40 out of 64, scaled to the image size), with the likelihood of the visible pixels
only. As training proceeds the hidden pixels of the *training* images are recovered as
:math:`g_\beta(z)` with :math:`z` inferred from the visible pixels, and scored by the MSE between
recovered and true pixels on the hidden region.

Protocol of the official code (``train_flexible_priors.py`` in the history of
``jianwen-xie/Latent-Space-Normalizing-Flow``), the default here:

* :math:`z` comes from the **training chain** -- ``inference.steps`` noisy Langevin steps (20, s = 0.1)
  from a fresh :math:`\mathcal{N}(0, I)` draw -- and :math:`g_\beta(z)` is not clamped;
* the MSE is on the **[0, 1] pixel scale**, ``((x + 1) / 2 - (g + 1) / 2)^2``, i.e. a quarter of the MSE on
  symgen's ``[-1, 1]`` scale, pooled over all hidden pixels (the official code averages per batch).

``model.tasks.recovery_chain`` picks the chain: ``train`` (default, the official protocol) reports
``recovery_mse``; ``test`` reports ``recovery_mse_test_chain`` from the long noise-free test-time chain
(``inference.test_steps``; symgen's earlier protocol); ``both`` reports both. Every number is on the
[0, 1] scale. Run it with ``train.eval_every`` to record the curve in ``metrics.jsonl``.

Registered as ``recovery_mse``; writes ``images/recovery.png`` (rows: data, occluded input, recovered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from symgen.data.masks import OcclusionSpec, occlusion_mask
from symgen.metrics.recon import masked_mse
from symgen.registry import EVALS
from symgen.tasks.common import batched, eval_images, interleave_rows, latent_model, task_options

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["RECOVERY_CHAINS", "recover", "unit_scale_mse", "eval_recovery_mse"]

RECOVERY_CHAINS = ("train", "test", "both")


@torch.no_grad()
def recover(
    model: Any, x: Tensor, mask: Tensor, chain: str = "train", generator: torch.Generator | None = None
) -> Tensor:
    """Observed pixels kept, hidden ones (``mask == 0``) read off :math:`g_\\beta(z)`.

    ``chain="train"``: :math:`z` from the training chain (official recovery protocol); ``"test"``: from the
    test-time chain. Only ``x * mask`` reaches the model.
    """
    if chain not in ("train", "test"):
        raise ValueError(f"chain must be 'train' or 'test', got {chain!r}")
    x_obs = x * mask
    z = model.infer(x_obs, mask, test=chain == "test", generator=generator)
    return mask * x + (1 - mask) * model.generator(z)


def unit_scale_mse(x: Tensor, x_hat: Tensor, mask: Tensor) -> float:
    """MSE over the hidden pixels (``mask == 0``) on the [0, 1] pixel scale of images given in ``[-1, 1]``."""
    return masked_mse((x + 1) / 2, (x_hat + 1) / 2, mask)[0]


@EVALS.register("recovery_mse", help="MSE on the hidden pixels of occluded training images (LFBM Table 5)")
def eval_recovery_mse(ctx: EvalContext) -> dict[str, float]:
    """``{"recovery_mse"}`` and/or ``{"recovery_mse_test_chain"}`` ([0, 1] scale) on up to
    ``model.tasks.max_images`` training images, with the chain(s) of ``model.tasks.recovery_chain``."""
    model = latent_model(ctx, "recovery_mse")
    spec = OcclusionSpec.from_config(ctx.cfg["model"].get("occlusion") or {})
    if not spec.active:
        raise ValueError("recovery_mse needs a run trained on occluded data (model.occlusion.kind != none)")
    opts = task_options(ctx)
    which = str(opts["recovery_chain"])
    if which not in RECOVERY_CHAINS:
        raise ValueError(f"model.tasks.recovery_chain must be one of {RECOVERY_CHAINS}, got {which!r}")
    x, _ = eval_images(ctx.train, int(opts["max_images"]), ctx.device)
    mask = occlusion_mask(x, spec)  # the very masks the model was trained with
    out: dict[str, float] = {}
    shown: list[Tensor] = []
    for chain, key in (("train", "recovery_mse"), ("test", "recovery_mse_test_chain")):
        if which not in (chain, "both"):
            continue

        def run(xb: Tensor, mb: Tensor, chain: str = chain) -> Tensor:
            return recover(model, xb, mb, chain, ctx.generator)

        x_hat = batched(run, x, mask, batch_size=int(opts["batch_size"]))
        out[key] = unit_scale_mse(x, x_hat, mask)
        shown.append(x_hat)
    k = min(8, len(x))
    ctx.save_images(
        "recovery", interleave_rows(x[:k], x[:k] * mask[:k] + (mask[:k] - 1), *(s[:k] for s in shown)), nrow=k
    )
    return out
