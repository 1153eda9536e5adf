r"""The mixing study of NT-EBM Secs. 4.1-4.2 as one evaluation (``mixing``) of any flow-tilted EBM run.

For :math:`p_\theta(x) \propto e^{f_\theta(x)} q_\alpha(x)` (``ntebm``, ``nce_ebm``, ``glow_ebm``) it runs
``chains`` long chains of ``steps`` steps from the same starts :math:`z_0 \sim q_0`
(:math:`x_0 = g_\alpha(z_0)`) with three samplers, discards ``burn_in`` steps (during which HMC adapts its
step size toward 0.651) and
compares them in data space (latent chains pushed forward by :math:`g_\alpha`):

* ``latent_hmc`` -- HMC on Eq. (9) in ``z`` (the model's ``model.hmc`` kernel: leapfrog steps, adaptation);
* ``latent_langevin`` -- over-damped (unadjusted) Langevin on Eq. (9), step ``langevin_step_size`` (null: the
  latent HMC's adapted step, i.e. the same discretisation as one leapfrog step);
* ``data_hmc`` -- HMC on Eq. (7), :math:`f_\theta(x) + \log q_\alpha(x)`, in ``x`` (the flow's inverse).

Metrics per sampler: ``rhat_<s>`` -- mean split R-hat over data coordinates (Fig. 2(a-b); NT-EBM reads
< 1.2 as approximate convergence); ``ac_lag_<s>`` -- the first lag at which the autocorrelation, averaged
over chains and coordinates, falls below ``ac_threshold`` (``steps - burn_in`` if never; Fig. 2(c-d));
``modes_<s>`` (data with mixture means, e.g. 8 Gaussians) -- the mean number of modes a chain visits
(nearest mean). Magnetized Langevin (Sec. 4.2, :class:`~symgen.samplers.MagnetizedLangevin`) from one
latent HMC end point toward another: ``magnet_dist_ratio`` = final / initial distance to the target.
Pictures (``plots/``): ``mixing_rhat_<s>``, ``mixing_autocorrelation``, ``mixing_chains`` (2-D: Fig. 1's
trajectories in ``x`` and ``z``), ``mixing_magnet`` (path and energy profile, Fig. 5); images: chain strips
``images/mixing_strip_<s>`` (Fig. 4: one chain every ``strip_every`` steps) and ``images/mixing_magnet``.
Options: ``model.tasks.mixing`` of the run (:data:`DEFAULTS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from symgen.diagnostics import autocorrelation, split_rhat
from symgen.registry import EVALS
from symgen.samplers import Langevin, MagnetizedLangevin, run_chain
from symgen.tasks.common import task_options

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = ["DEFAULTS", "mixing_chains", "mixing_summary", "eval_mixing"]

SAMPLERS = ("latent_hmc", "latent_langevin", "data_hmc")
DEFAULTS: dict[str, Any] = {
    "chains": 64,  # m of Fig. 2 (a-b)
    "steps": 2000,  # n of Fig. 2
    "burn_in": 400,  # Fig. 2 (a-b): 400
    "samplers": list(SAMPLERS),
    "langevin_step_size": None,  # null: the latent HMC's adapted step size
    "data_step_size": None,  # initial data-space HMC step (adapted during burn-in); null: model.hmc.step_size
    "ac_threshold": 0.1,
    "strip_every": 5,  # Fig. 4: every 5 steps
    "strip_frames": 100,
    "magnet_gamma": 0.5,
    "magnet_steps": 1000,  # Sec. 4.2: n = 1,000
    "magnet_step_size": 0.1,
}


def _options(ctx: EvalContext) -> dict[str, Any]:
    given = dict(task_options(ctx).get("mixing") or {})
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"model.tasks.mixing: unknown key(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **given}
    bad = [s for s in o["samplers"] if s not in SAMPLERS]
    if bad:
        raise ValueError(f"model.tasks.mixing.samplers: unknown {bad}; choose from {list(SAMPLERS)}")
    if not 4 <= o["steps"] - o["burn_in"] or o["burn_in"] < 0:
        raise ValueError("model.tasks.mixing: need 0 <= burn_in and at least 4 steps after it")
    return o


def _kernel_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    return generator if generator is not None and generator.device.type == device.type else None


@torch.no_grad()
def _push(model: Any, zs: Tensor, chunk: int = 4096) -> Tensor:
    """``(T, B, *event)`` latent trajectory -> data space, in chunks."""
    flat = zs.reshape(-1, *zs.shape[2:])
    x = torch.cat([model.flow_forward(c) for c in flat.split(chunk)])
    return x.reshape(zs.shape)


def mixing_chains(
    model: Any, options: dict[str, Any], generator: torch.Generator | None = None
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Run the samplers of the study from shared starts :math:`z_0 \\sim q_0`.

    Returns ``(x, z)``: per sampler the post-burn-in data-space chains ``(chains, draws, *event)`` and the
    latent ones (latent samplers only), in the layout of :mod:`symgen.diagnostics`.
    """
    o = {**DEFAULTS, **options}
    n, steps, burn = int(o["chains"]), int(o["steps"]), int(o["burn_in"])
    z0 = model.latent_noise(n, generator)
    gen = _kernel_generator(generator, z0.device)
    xs: dict[str, Tensor] = {}
    zs: dict[str, Tensor] = {}
    hmc_step = model.sampling_step_size()
    if "latent_hmc" in o["samplers"] or o["langevin_step_size"] is None:
        kernel = model.hmc.replace(step_size=hmc_step, generator=gen)
        adapt = burn if kernel.adaptation is not None else 0
        _, trace = run_chain(
            kernel, model.latent_log_prob, z0, steps, keep_trajectory=True, adapt_steps=adapt
        )
        hmc_step = float(trace.state.step_size.mean())
        if "latent_hmc" in o["samplers"]:
            zs["latent_hmc"] = trace.samples().transpose(0, 1)
    if "latent_langevin" in o["samplers"]:
        step = hmc_step if o["langevin_step_size"] is None else float(o["langevin_step_size"])
        _, trace = run_chain(
            Langevin(step, generator=gen), model.latent_log_prob, z0, steps, keep_trajectory=True
        )
        zs["latent_langevin"] = trace.positions[burn:].transpose(0, 1)
    for name, z in zs.items():
        xs[name] = _push(model, z.transpose(0, 1)).transpose(0, 1)
    if "data_hmc" in o["samplers"]:
        x0 = model.flow_forward(z0).detach()
        step = model.hmc.options["step_size"] if o["data_step_size"] is None else o["data_step_size"]
        kernel = model.hmc.replace(step_size=float(step), generator=gen)
        adapt = burn if kernel.adaptation is not None else 0
        _, trace = run_chain(kernel, model.log_prob, x0, steps, keep_trajectory=True, adapt_steps=adapt)
        xs["data_hmc"] = trace.samples().transpose(0, 1)
    return {k: xs[k] for k in SAMPLERS if k in xs}, zs


def _modes_visited(x: Tensor, means: Tensor) -> float:
    """Mean over chains of the number of distinct nearest mixture means along the chain."""
    flat = x.reshape(x.shape[0], x.shape[1], -1).double()
    d = torch.cdist(flat, means.to(flat).unsqueeze(0).expand(flat.shape[0], -1, -1))
    nearest = d.argmin(-1)  # (chains, draws)
    hits = torch.zeros(flat.shape[0], len(means), dtype=torch.bool)
    hits.scatter_(1, nearest.cpu(), True)
    return float(hits.sum(1).double().mean())


def mixing_summary(
    x: Tensor, threshold: float = 0.1, means: Tensor | None = None
) -> tuple[dict[str, float], Tensor, Tensor]:
    """``({rhat, ac_lag[, modes]}, split R-hat per coordinate, mean autocorrelation by lag)`` of chains
    ``x`` of shape ``(chains, draws, *event)``."""
    flat = x.reshape(x.shape[0], x.shape[1], -1).double().cpu()
    r = split_rhat(flat)
    rho = autocorrelation(flat, dim=1).mean(dim=(0, 2))
    below = (rho < threshold).nonzero()
    out = {
        "rhat": float(r[torch.isfinite(r)].mean()),
        "ac_lag": float(below[0, 0]) if len(below) else float(flat.shape[1]),
    }
    if means is not None:
        out["modes"] = _modes_visited(x, means)
    return out, r, rho


@EVALS.register("mixing", help="NT-EBM Sec. 4.1-4.2: R-hat, autocorrelation, strips, magnetized path")
def eval_mixing(ctx: EvalContext) -> dict[str, float]:
    model = ctx.model
    if not all(hasattr(model, a) for a in ("latent_log_prob", "flow_forward", "hmc", "latent_noise")):
        raise ValueError(
            "evaluation 'mixing' needs a flow-tilted EBM (ntebm, nce_ebm, glow_ebm); "
            f"got {type(model).__name__}"
        )
    o = _options(ctx)
    xs, zs = mixing_chains(model, o, ctx.generator)
    means = getattr(ctx.train, "means", None)
    results: dict[str, float] = {}
    curves = {}
    for name, x in xs.items():
        summary, r, rho = mixing_summary(x, float(o["ac_threshold"]), means)
        results.update({f"{k}_{name}": v for k, v in summary.items()})
        curves[name] = rho
        _save_rhat(ctx, name, r)
    _plot_autocorrelation(ctx, curves)
    if model.kind == "image":
        _image_strips(ctx, xs, int(o["strip_every"]), int(o["strip_frames"]))
    else:
        _plot_chains_2d(ctx, xs, zs)
    results.update(_magnetized_path(ctx, model, zs.get("latent_hmc"), o))
    return results


def _save_rhat(ctx: EvalContext, name: str, r: Tensor) -> None:
    if ctx.run_dir is None or not torch.isfinite(r).any():
        return
    from symgen.plots import plot_rhat_histogram
    from symgen.rundir import RunDir

    plot_rhat_histogram(r, RunDir(ctx.run_dir).plot_path(f"mixing_rhat_{name}"))


def _plot_autocorrelation(ctx: EvalContext, curves: dict[str, Tensor]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, rho in curves.items():
        ax.plot(rho.numpy(), label=name)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("lag")
    ax.set_ylabel("autocorrelation (mean over chains, coordinates)")
    ax.legend()
    ctx.save_figure("mixing_autocorrelation", fig)


def _image_strips(ctx: EvalContext, xs: dict[str, Tensor], every: int, frames: int) -> None:
    for name, x in xs.items():
        strip = x[0, ::every][:frames]
        ctx.save_images(f"mixing_strip_{name}", strip.clamp(-1, 1), nrow=10)


def _plot_chains_2d(ctx: EvalContext, xs: dict[str, Tensor], zs: dict[str, Tensor]) -> None:
    import matplotlib.pyplot as plt

    panels = [(f"x: {k}", v) for k, v in xs.items()] + [(f"z: {k}", v) for k, v in zs.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3), squeeze=False)
    data = ctx.train.sample(1000, torch.Generator().manual_seed(0)) if hasattr(ctx.train, "sample") else None
    for ax, (title, x) in zip(axes[0], panels):
        if data is not None and title.startswith("x"):
            ax.scatter(data[:, 0], data[:, 1], s=1, c="k", alpha=0.3)
        for c in range(min(4, x.shape[0])):
            path = x[c, :300].cpu()
            ax.plot(path[:, 0], path[:, 1], lw=0.5, alpha=0.8)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    ctx.save_figure("mixing_chains", fig)


def _magnetized_path(
    ctx: EvalContext, model: Any, z_hmc: Tensor | None, o: dict[str, Any]
) -> dict[str, float]:
    """Sec. 4.2: magnetized Langevin from ``z1`` toward ``z2`` (two latent HMC end points, else q0 draws)."""
    import matplotlib.pyplot as plt

    if z_hmc is not None and z_hmc.shape[0] >= 2:
        z1, z2 = z_hmc[0, -1:], z_hmc[1, -1]
    else:
        pair = model.latent_noise(2, ctx.generator)
        z1, z2 = pair[:1], pair[1]
    gen = _kernel_generator(ctx.generator, z1.device)
    kernel = MagnetizedLangevin(z2, float(o["magnet_gamma"]), float(o["magnet_step_size"]), generator=gen)
    steps = int(o["magnet_steps"])
    _, trace = run_chain(kernel, model.latent_log_prob, z1, steps, keep_trajectory=True)
    path = torch.cat([z1[None], trace.positions])  # (steps + 1, 1, *event)
    with torch.no_grad():
        energy = torch.cat([-model.latent_log_prob(c[:, 0]) for c in path.split(512)]).cpu()
    x = _push(model, path)[:, 0].cpu()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[1].plot(energy.numpy())
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("U(z) = -log p(z)")
    if model.kind == "image":
        frames = x[:: max(1, steps // 10)]
        ctx.save_images("mixing_magnet", frames.clamp(-1, 1), nrow=len(frames))
        axes[0].axis("off")
    else:
        axes[0].plot(x[:, 0].numpy(), x[:, 1].numpy(), lw=0.7)
        axes[0].set_title("magnetized path in x", fontsize=8)
    ctx.save_figure("mixing_magnet", fig)
    d0 = float((z1[0] - z2).norm())
    return {"magnet_dist_ratio": float((path[-1, 0] - z2).norm()) / max(d0, 1e-12)}
