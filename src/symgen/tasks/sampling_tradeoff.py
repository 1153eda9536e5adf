r"""Sample quality against sampling cost (dissertation Table 6.1 / Fig. 6.6), registered as the evaluation
``sampling_tradeoff``.

For every sampler a model offers (``model.sampling_variants()``: ``{label: (nfe, sample)}`` -- DDGAN: its
``T`` steps; DDPM: each step count of ``model.sweep_steps``) it draws as many samples as the test split holds
(at most 10,000) and reports the number of network evaluations per sample (``nfe``), the wall-clock seconds
per 1000 samples (``sec_per_1k``: the time of that draw, in batches of up to 1000, scaled to 1000 samples,
after one warm-up call, in this process and thread setting), and their quality: ``fd_clf`` and
``precision_clf`` / ``recall_clf`` (improved precision and recall of Kynkaenniemi et al. 2019 in the
classifier features, ``pr_clf``) for images, ``mmd2`` for 2-D data. A model with one sampler reports plain
names; with several, each name gets the suffix ``_s<nfe>``. The run gets the picture
``plots/quality_vs_time.png`` (quality against seconds per 1000 samples, log scale).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from symgen.evaluation import data_tensor
from symgen.registry import EVALS

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["timed_draw", "eval_sampling_tradeoff"]


def timed_draw(
    sample: Any, n: int, generator: torch.Generator, device: torch.device | None = None, batch: int = 1000
) -> tuple[torch.Tensor, float]:
    """``n`` samples drawn with ``sample(k, generator)`` in batches of at most ``batch`` (on the CPU), and the
    seconds that took, after a 16-sample warm-up call (synchronised on CUDA)."""

    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        sample(min(n, 16), torch.Generator().manual_seed(0))
        sync()
        t0 = time.perf_counter()
        chunks = [sample(min(batch, n - i), generator) for i in range(0, n, batch)]
        sync()
        seconds = time.perf_counter() - t0
    return torch.cat([c.cpu() for c in chunks]), seconds


def _quality(ctx: EvalContext, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    from symgen.metrics import compute_metric

    if real.ndim == 4:
        ds = str(ctx.cfg["data"]["name"])
        out = compute_metric("fd_clf", {"real": real, "fake": fake}, dataset=ds)
        pr = compute_metric("pr_clf", {"real": real, "fake": fake}, dataset=ds)
        return {"fd_clf": out["fd_clf"], "precision_clf": pr["precision_clf"], "recall_clf": pr["recall_clf"]}
    return compute_metric("mmd2", {"real": real, "fake": fake})


@EVALS.register(
    "sampling_tradeoff", help="quality (fd_clf, recall / mmd2) vs NFE and seconds per 1000 samples"
)
def eval_sampling_tradeoff(ctx: EvalContext) -> dict[str, float]:
    variants = getattr(ctx.model, "sampling_variants", None)
    if not callable(variants):
        raise ValueError("sampling_tradeoff needs a model with sampling_variants() (ddgan, ddpm)")
    real = data_tensor(ctx.test)[:10000]
    rows: dict[str, dict[str, float]] = {}
    for label, (nfe, sample) in variants().items():
        fake, seconds = timed_draw(sample, len(real), ctx.generator, ctx.device)
        row = {"nfe": float(nfe), "sec_per_1k": seconds * 1000 / len(real)}
        rows[label] = {**row, **_quality(ctx, real, fake)}
    if ctx.run_dir is not None:
        _plot(ctx, rows)
    if len(rows) == 1:
        return next(iter(rows.values()))
    return {f"{k}_s{int(row['nfe'])}": v for row in rows.values() for k, v in row.items() if k != "nfe"}


def _plot(ctx: EvalContext, rows: dict[str, dict[str, float]]) -> None:
    import matplotlib.pyplot as plt

    key = "fd_clf" if "fd_clf" in next(iter(rows.values())) else "mmd2"
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    xs = [r["sec_per_1k"] for r in rows.values()]
    ax.plot(xs, [r[key] for r in rows.values()], "o-")
    for label, r in rows.items():
        ax.annotate(label, (r["sec_per_1k"], r[key]), fontsize=7)
    ax.set(xscale="log", xlabel="seconds per 1000 samples", ylabel=key)
    ctx.save_figure("quality_vs_time", fig)
