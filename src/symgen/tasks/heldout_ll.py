"""Test log-likelihoods of a tilted VAE on a 2-D toy (VAEBM, dissertation Sec. 4.4.1): ``test_ll_parts``.

* ``test_ll_true`` -- the toy's exact log-density on the test points;
* ``test_ll_vae_iwae`` -- the VAE's importance-weighted bound (``model.tasks.iwae_samples`` draws; the
  dissertation: 10,000), a lower bound on its log-likelihood;
* ``test_ll_vaebm_grid`` -- the tilted model's unnormalised :math:`\\log p` on the test points minus
  :math:`\\log Z` by midpoint quadrature on ``model.tasks.grid_resolution`` cells per side over the toy's
  bounds (:func:`symgen.metrics.toy.log_normalizer`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from symgen.metrics.toy import log_normalizer
from symgen.registry import EVALS
from symgen.tasks.common import task_options

if TYPE_CHECKING:
    from symgen.evaluation import EvalContext

__all__ = ["eval_test_ll_parts"]


@EVALS.register("test_ll_parts", help="VAEBM 2-D: true, VAE (IWAE bound) and VAEBM (grid quadrature) test LL")
def eval_test_ll_parts(ctx: EvalContext) -> dict[str, float]:
    from symgen.evaluation import data_tensor

    model = ctx.model
    if not callable(getattr(model, "vae_log_likelihood", None)) or not hasattr(ctx.train, "bounds"):
        raise ValueError("evaluation 'test_ll_parts' needs a VAEBM on a 2-D toy with a known density")
    opts = task_options(ctx)
    x = data_tensor(ctx.test).to(ctx.device)
    torch.manual_seed(int(ctx.cfg.get("seed", 0) or 0))
    with torch.no_grad():
        true = ctx.train.log_prob(x.cpu().double()).mean()
        vae = model.vae_log_likelihood(x).mean()
        log_z = log_normalizer(model.log_prob, ctx.train.bounds, int(opts.get("grid_resolution", 128)),
                               device=ctx.device, chunk_size=8192)  # fmt: skip
        tilted = model.log_prob(x).double().mean() - log_z
    return {"test_ll_true": float(true), "test_ll_vae_iwae": float(vae), "test_ll_vaebm_grid": float(tilted)}
