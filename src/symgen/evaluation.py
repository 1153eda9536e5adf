"""Evaluations of trained models: the ``EvalContext`` contract, generic evaluations and trainer hooks.

An evaluation is a function ``fn(ctx: EvalContext) -> dict[str, float]`` registered in
:data:`symgen.registry.EVALS`; it may also save pictures through ``ctx.save_images`` /
``ctx.save_figure``. ``symgen eval RUN --metrics a b`` runs them and appends one ``{"kind": "eval"}``
record to ``metrics.jsonl``. Model-family tasks (reconstruction, inpainting, anomaly detection...)
register theirs in :mod:`symgen.tasks`; the generic ones (samples, ``fd_clf``, ``mmd``,
``test_nll``, ``grid_loglik``) live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from symgen.models.base import GenerativeModel
from symgen.registry import EVALS
from symgen.rundir import RunDir

__all__ = [
    "EvalContext",
    "run_evaluations",
    "save_samples",
    "make_sample_hook",
    "make_eval_hook",
    "data_tensor",
]


@dataclass
class EvalContext:
    """Everything an evaluation may need: the model, its config, the data splits and the run directory."""

    model: GenerativeModel
    cfg: dict[str, Any]
    train: Any
    test: Any
    val: Any
    run_dir: Path | None
    device: torch.device
    generator: torch.Generator
    step: int = 0

    @property
    def n_samples(self) -> int:
        return int(self.cfg["train"]["n_samples"])

    def save_images(self, name: str, images: Tensor, nrow: int = 8) -> Path | None:
        """Save an image grid (images in [-1, 1]) as ``images/<name>.png``."""
        if self.run_dir is None:
            return None
        from symgen.plots import save_image_grid

        path = RunDir(self.run_dir).image_path(name)
        save_image_grid(images.detach().cpu(), path, nrow=nrow, scale=display_scale(images))
        return path

    def save_figure(self, name: str, fig: Any) -> Path | None:
        """Save a matplotlib figure as ``plots/<name>.png`` and close it."""
        import matplotlib.pyplot as plt

        if self.run_dir is None:
            plt.close(fig)
            return None
        path = RunDir(self.run_dir).plot_path(name)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path


def display_scale(images: Tensor, min_size: int = 32) -> int:
    """Integer up-scaling that shows small images (e.g. 8x8 digits) at least ``min_size`` pixels wide."""
    return max(1, min_size // int(images.shape[-1]))


def data_tensor(data: Any, n: int | None = None) -> Tensor:
    """The examples of a split as one tensor (``ImageData.x`` or a toy test set)."""
    x = data.x if hasattr(data, "x") else data
    return x if n is None else x[:n]


def save_samples(x: Tensor, data: Any, path: Path) -> Path:
    """Write samples as a PNG: image grid for images, scatter plot (with the data's box) for 2-D."""
    from symgen.plots import save_image_grid, save_scatter

    path.parent.mkdir(parents=True, exist_ok=True)
    if x.ndim == 4:
        save_image_grid(x, path, nrow=int(max(1, round(len(x) ** 0.5))), scale=display_scale(x))
    else:
        bounds = getattr(data.train, "bounds", None)
        save_scatter(x, path, bounds=bounds)
    return path


def run_evaluations(
    model: GenerativeModel,
    cfg: dict[str, Any],
    data: Any,
    run: RunDir | None,
    names: list[str],
    step: int,
    seed: int = 0,
) -> dict[str, float]:
    """Run the evaluations ``names`` and log their results as one ``eval`` record."""
    fns = [EVALS.get(name) for name in names]  # fail fast on unknown names
    ctx = EvalContext(
        model=model,
        cfg=cfg,
        train=data.train,
        test=data.test,
        val=data.val,
        run_dir=run.path if run is not None and run.enabled else None,
        device=model.device,
        generator=torch.Generator().manual_seed(seed),
        step=step,
    )
    model.eval()
    results: dict[str, float] = {}
    for fn in fns:
        results.update({k: float(v) for k, v in fn(ctx).items()})
    if run is not None:
        run.log({"kind": "eval", "step": step, **results})
    return results


def make_sample_hook(data: Any):
    """Trainer hook writing a sample picture ``images/samples-<step>.png`` (also to the run's sinks)."""

    def hook(trainer: Any) -> None:
        if not trainer.run.enabled:
            return
        model = trainer.eval_model
        model.eval()
        n = int(trainer.cfg["train"]["n_samples"])
        with torch.no_grad():
            x = model.sample(n, generator=torch.Generator().manual_seed(0)).cpu()
        path = save_samples(x, data, trainer.run.image_path(f"samples-{trainer.step:07d}"))
        trainer.run.log_image("samples", path, trainer.step)

    return hook


def make_eval_hook(data: Any):
    """Trainer hook running ``train.eval_metrics`` on the evaluation model."""

    def hook(trainer: Any) -> None:
        names = list(trainer.cfg["train"]["eval_metrics"])
        if names and trainer.dist.is_main:
            run_evaluations(trainer.eval_model, trainer.cfg, data, trainer.run, names, trainer.step)

    return hook


# --------------------------------------------------------------------------- generic evaluations


@EVALS.register("samples", help="picture of model samples (images/samples.png)")
def eval_samples(ctx: EvalContext) -> dict[str, float]:
    with torch.no_grad():
        x = ctx.model.sample(ctx.n_samples, generator=ctx.generator).cpu()
    if ctx.run_dir is not None:
        from types import SimpleNamespace

        save_samples(x, SimpleNamespace(train=ctx.train), RunDir(ctx.run_dir).image_path("samples"))
    return {}


@EVALS.register("test_nll", help="model's own held-out negative log-likelihood (nats; bits/dim for images)")
def eval_test_nll(ctx: EvalContext) -> dict[str, float]:
    return ctx.model.evaluate(data_tensor(ctx.test).to(ctx.device), ["test_nll"])


def _available(ctx: EvalContext, kind: str) -> dict[str, Any]:
    """Inputs of the metric functions (:mod:`symgen.metrics`) that a trained model and its data provide.

    Sample metrics compare ``n`` model samples with ``n`` held-out examples, ``n`` = size of the test
    split, at most 10,000 (2-D: the ``data.n_test`` test points).
    """
    real = data_tensor(ctx.test)[:10000]
    out: dict[str, Any] = {"real": real}
    if kind == "samples":
        with torch.no_grad():
            out["fake"] = torch.cat(
                [ctx.model.sample(len(c), generator=ctx.generator).cpu() for c in real.split(1000)]
            )
    if hasattr(ctx.model, "log_prob"):
        model = ctx.model

        def log_prob(x: Tensor) -> Tensor:
            return model.log_prob(x.to(ctx.device)).cpu()

        out["log_prob"] = log_prob
    if getattr(ctx.train, "has_density", False):
        out["true_log_prob"] = ctx.train.log_prob
    if hasattr(ctx.train, "bounds"):
        out["bounds"] = ctx.train.bounds
    return out


def _metric_eval(name: str):
    from symgen.metrics import METRIC_KINDS, compute_metric

    spec = METRIC_KINDS[name]

    def fn(ctx: EvalContext) -> dict[str, float]:
        avail = _available(ctx, spec.kind)
        options = {}
        if "bounds" in spec.options:
            options["bounds"] = avail.get("bounds")
        if "dataset" in spec.options:
            options["dataset"] = str(ctx.cfg["data"]["name"])
        return compute_metric(name, avail, **options)

    fn.__doc__ = f"metric '{name}' ({spec.kind}) computed on the run's model and test split"
    return fn


def _register_metric_evals() -> None:
    """Expose every sample/density metric of :mod:`symgen.metrics` as an evaluation of the same name."""
    from symgen.metrics import METRIC_KINDS
    from symgen.registry import METRICS

    for name, spec in METRIC_KINDS.items():
        if spec.kind in ("samples", "density", "density_vs_truth") and name not in EVALS:
            EVALS.register(name, help=METRICS.help(name))(_metric_eval(name))


_register_metric_evals()
