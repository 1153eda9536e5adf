r"""Sample metrics of every sample set a model names (``model.named_samples(n)``), in one evaluation each.

``fd_clf_parts`` (images) -- ``fd_clf_<name>``: the classifier-feature Frechet distance (metric ``fd_clf``) of
each named sample set to the test split, e.g. a flow-tilted EBM's flow alone (``flow``: ancestral samples of
:math:`q_\alpha`) beside the tilted model (``tilted``), NT-EBM Table 1 / dissertation Table 4.2 in one run;
``mmd2_parts`` (2-D) -- ``mmd2_<name>`` likewise. ``n`` is the size of the test split (at most 10,000).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from symgen.evaluation import data_tensor
from symgen.registry import EVALS

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["eval_fd_clf_parts", "eval_mmd2_parts"]


def _parts(ctx: EvalContext, metric: str, **options: object) -> dict[str, float]:
    from symgen.metrics import compute_metric

    model = ctx.model
    if not callable(getattr(model, "named_samples", None)):
        raise ValueError(
            f"evaluation '{metric}_parts' needs a model with named_samples (e.g. ntebm, coopflow)"
        )
    real = data_tensor(ctx.test)[:10000]
    sets: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for chunk in real.split(1000):
            for name, x in model.named_samples(len(chunk), ctx.generator).items():
                sets.setdefault(name, []).append(x.detach().cpu())
    out = {}
    for name, xs in sets.items():
        value = compute_metric(metric, {"real": real, "fake": torch.cat(xs)}, **options)
        out.update({f"{k}_{name}": v for k, v in value.items()})
    return out


@EVALS.register("fd_clf_parts", help="fd_clf of each sample set the model names (flow alone vs tilted, ...)")
def eval_fd_clf_parts(ctx: EvalContext) -> dict[str, float]:
    return _parts(ctx, "fd_clf", dataset=str(ctx.cfg["data"]["name"]))


@EVALS.register("mmd2_parts", help="mmd2 of each sample set the model names (2-D)")
def eval_mmd2_parts(ctx: EvalContext) -> dict[str, float]:
    return _parts(ctx, "mmd2")
