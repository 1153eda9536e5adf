"""The "vs BlackJAX" section of ``bench_samplers.py``: symgen HMC eager, symgen HMC compiled
(``run_chain(compile=True)``) and BlackJAX HMC (``jax.jit`` + ``vmap``, in benchmarks/.venv-jax, made by
``bash benchmarks/jax-env.sh``; the column is skipped with a message when it is missing) on the same targets,
start points, step size and leapfrog count, no adaptation; ESS by ``symgen.diagnostics.effective_sample_size``
on both sides' positions.

Targets (float32): the 50-d Gaussian of (b); ``-|x|^2/2 + MLP(x)`` with the MLP 64-256-256-1 (SiLU) of (a);
``-|x|^2/2 + ConvEnergy(x)`` on 1x28x28 (the conv energy of (c)); and a 2-D flow-tilted latent density
``log N(z; 0, I) + f(g(z))`` (NT-EBM Eq. (9), ``symgen.densities.tilted_latent_log_prob``) with ``g`` a small
fixed symgen/zuko ``realnvp`` (2 affine couplings, conditioners 1-16-16-2 ReLU) and ``f`` a fixed MLP
2-32-32-1 (SiLU). The weights are exported from torch; the jax side (``_blackjax_side.py``) rewrites each
density in jax and its log-densities are checked against torch's on 16 points (relative error reported).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from symgen.densities import tilted_latent_log_prob
from symgen.diagnostics import effective_sample_size
from symgen.flows.vector import RealNVP
from symgen.samplers import HMC, run_chain

__all__ = ["Target", "targets", "run_vs_blackjax", "markdown", "JAX_PYTHON"]

ROOT = Path(__file__).resolve().parents[1]
JAX_PYTHON = ROOT / "benchmarks" / ".venv-jax" / "bin" / "python"


@dataclass
class Target:
    name: str
    kind: str
    log_prob: Any
    x0: torch.Tensor
    n_steps: int
    step_size: float
    weights: dict[str, np.ndarray]
    min_ess: bool = False  # report the minimum over coordinates instead of the mean
    repeats: int | None = None  # steady-state repeats (default: run_vs_blackjax's)


def _normal_plus(net: nn.Module) -> Any:
    return lambda x: -0.5 * (x * x).flatten(1).sum(1) + net(x)


def targets(seed: int = 0, conv_chains: int = 16, conv_steps: int = 4) -> list[Target]:
    from bench_samplers import ConvEnergy, MLPEnergy, gaussian_50d  # noqa: PLC0415

    torch.manual_seed(seed)
    prec, _ = gaussian_50d(seed)
    out = [
        Target(
            "50-d Gaussian, 64 chains, 1200 steps",
            "gaussian",
            lambda x: -0.5 * ((x @ prec) * x).sum(-1),
            torch.randn(64, 50),
            1200,
            0.15,
            {"prec": prec.numpy()},
        )
    ]
    mlp = MLPEnergy().requires_grad_(False)
    w = {k: v.numpy() for k, v in mlp.state_dict().items()}
    out.append(
        Target(
            "MLP 64-256-256-1 (SiLU), 256 chains, 500 steps",
            "mlp",
            _normal_plus(mlp),
            torch.randn(256, 64),
            500,
            0.1,
            w,
        )
    )
    conv = ConvEnergy().requires_grad_(False)
    w = {k: v.numpy() for k, v in conv.state_dict().items()}
    out.append(
        Target(
            f"conv energy 1x28x28, {conv_chains} chains, {conv_steps} steps",
            "conv",
            _normal_plus(conv),
            torch.randn(conv_chains, 1, 28, 28),
            conv_steps,
            0.05,
            w,
            repeats=1,  # BlackJAX takes minutes per call here
        )
    )
    flow = RealNVP((2,), transforms=2, hidden_features=(16, 16)).requires_grad_(False)
    f = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, 1))
    f.requires_grad_(False)[-1].weight.mul_(3.0)  # a visible tilt
    w = {f"f.{k}": v.numpy() for k, v in f.state_dict().items()}
    w["n_layers"] = np.array(len(flow.bijection.layers))
    for i, layer in enumerate(flow.bijection.layers):
        t = layer.transform
        w[f"mask_a.{i}"] = np.array(int(t.mask.nonzero()[0, 0]))  # the conditioning coordinate
        w.update({f"flow.{i}.{k}": v.numpy() for k, v in t.hyper.state_dict().items()})
    g_zuko = _layer_by_layer(flow)
    g_plain = _plain_coupling_forward(flow)
    z = torch.randn(256, 2)
    torch.testing.assert_close(g_plain(z), flow.bijection.forward(z)[0])  # the same function
    torch.testing.assert_close(g_zuko(z), flow.bijection.forward(z)[0])
    neg_energy = lambda x: f(x).squeeze(1)  # noqa: E731
    for label, g in (("symgen.flows realnvp (zuko)", g_zuko), ("the same couplings in plain torch", g_plain)):
        out.append(
            Target(
                f"2-D tilted target, {label}, 64 chains, 2000 steps",
                "tilted",
                tilted_latent_log_prob(neg_energy, g),
                x0=torch.randn(64, 2, generator=torch.Generator().manual_seed(seed)),
                n_steps=2000,
                step_size=0.2,
                weights=w,
                min_ess=True,
            )
        )
    return out


def _layer_by_layer(flow: RealNVP) -> Any:
    """``z -> x`` through the zuko layers of a symgen ``realnvp`` (``flow.bijection.forward`` without its
    non-finite-value tracing, whose ``ContextVar`` lookup ``torch.compile`` cannot trace)."""
    layers = list(flow.bijection.layers)

    def g(z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(layers):
            z, _ = layer.forward(z)
        return z

    return g


def _plain_coupling_forward(flow: RealNVP) -> Any:
    """The same map written with plain tensor ops on the same conditioner modules: per coupling (latent to
    data, zuko's inverse) ``x_b = (y_b - shift(y_a)) exp(-a / (1 + |a / log 1e-3|))`` with
    ``(shift, a) = hyper(y_a)``."""
    layers = [
        (int(t.mask.nonzero()[0, 0]), t.hyper) for t in (layer.transform for layer in flow.bijection.layers)
    ]

    def g(z: torch.Tensor) -> torch.Tensor:
        for a, hyper in reversed(layers):
            b = 1 - a
            phi = hyper(z[:, a : a + 1])
            shift, raw = phi[:, 0], phi[:, 1]
            log_scale = raw / (1 + (raw / math.log(1e-3)).abs())
            new_b = (z[:, b] - shift) * torch.exp(-log_scale)
            z = torch.stack((z[:, 0], new_b) if b == 1 else (new_b, z[:, 1]), dim=1)
        return z

    return g


def _ess(positions: torch.Tensor, use_min: bool) -> float:
    ess = effective_sample_size(positions.transpose(0, 1).double()).flatten()
    return float(ess.min() if use_min else ess.mean())


def _symgen(t: Target, repeats: int, n_leapfrog: int) -> dict[str, Any]:
    kernel = HMC(step_size=t.step_size, n_leapfrog=n_leapfrog, adaptation=None)
    res: dict[str, Any] = {}

    def run(compile_: bool) -> tuple[torch.Tensor, float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        _, trace = run_chain(kernel, t.log_prob, t.x0, t.n_steps, keep_trajectory=True, compile=compile_)
        return trace, time.perf_counter() - w0, time.process_time() - c0

    _, res["compiled_first_wall"], res["compiled_first_cpu"] = run(True)  # includes compilation
    best: dict[str, list[float]] = {"eager": [math.inf, math.inf], "compiled": [math.inf, math.inf]}
    for _ in range(repeats):  # interleaved: both see the same load
        for name, c in (("eager", False), ("compiled", True)):
            trace, wall, cpu = run(c)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
            res[f"{name}_ess"] = _ess(trace.positions, t.min_ess)
            res[f"{name}_acc"] = float(trace.acceptance_rate(False).mean())
    for name, (wall, cpu) in best.items():
        res[f"{name}_wall"], res[f"{name}_cpu"] = wall, cpu
    return res


def _one_core() -> None:
    """Pin the BlackJAX process to one core: XLA's CPU runtime keeps a second worker thread busy despite
    ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` (measured: CPU seconds 1.7x wall
    on the MLP), so only the affinity mask makes the comparison one thread against one thread."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _blackjax(t: Target, repeats: int, n_leapfrog: int, seed: int) -> dict[str, Any] | None:
    if not JAX_PYTHON.exists():
        return None
    check_x = t.x0[:16]
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "spec.npz", Path(tmp) / "out.npz"
        np.savez(
            spec,
            kind=t.kind,
            x0=t.x0.numpy(),
            n_steps=t.n_steps,
            n_leapfrog=n_leapfrog,
            repeats=repeats,
            step_size=t.step_size,
            seed=seed,
            check_x=check_x.numpy(),
            check_log_prob=t.log_prob(check_x).numpy(),
            **t.weights,
        )
        env = dict(os.environ, OMP_NUM_THREADS="1")
        script = str(ROOT / "benchmarks" / "_blackjax_side.py")
        subprocess.run(
            [str(JAX_PYTHON), script, str(spec), str(out)], check=True, env=env, preexec_fn=_one_core
        )
        r = dict(np.load(out))
    ess = _ess(torch.from_numpy(r["positions"]), t.min_ess)
    keys = ("first_wall", "first_cpu", "steady_wall", "steady_cpu", "check_error")
    return {
        "ess": ess,
        "acc": float(r["acceptance"].mean()),
        "versions": str(r["versions"]),
        **{k: float(r[k]) for k in keys},
    }


def run_vs_blackjax(
    repeats: int = 3, n_leapfrog: int = 10, seed: int = 0, only: str | None = None
) -> list[dict[str, Any]]:
    """Every target: symgen eager / compiled and BlackJAX timings (wall and CPU seconds) and ESS."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # compile from scratch
    rows = []
    for t in targets(seed):
        if only and only not in t.kind and only not in t.name:
            continue
        row = {"name": t.name, "kind": t.kind, "min_ess": t.min_ess, "load_before": os.getloadavg()[0]}
        row["symgen"] = _symgen(t, t.repeats or repeats, n_leapfrog)
        row["blackjax"] = _blackjax(t, t.repeats or repeats, n_leapfrog, seed)
        row["load_after"] = os.getloadavg()[0]
        print(row, flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The section's lines."""
    have_jax = all(r["blackjax"] is not None for r in rows)
    lines = [
        "## vs BlackJAX: ESS per second of HMC, symgen eager / compiled vs BlackJAX (`jax.jit` + `vmap`)",
        "",
        (__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip(),
        "",
        "HMC: 10 leapfrog steps, fixed step size, no adaptation, identity mass; one thread each",
        "(`torch.set_num_threads(1)`; XLA `--xla_cpu_multi_thread_eigen=false "
        "intra_op_parallelism_threads=1`, and the BlackJAX process pinned to one core by its affinity mask,",
        "without which XLA keeps a second core busy).",
        "Steady state: best of the repeats (symgen eager and compiled interleaved in one process; BlackJAX",
        "repeats its jitted call in its own process right after); *incl. compilation*: the first call of a",
        "fresh compile cache (symgen: `TORCHINDUCTOR_CACHE_DIR` set to an empty folder; jax: no persistent",
        "cache). ESS = mean over coordinates (min for the 2-D tilted target) of",
        "`symgen.diagnostics.effective_sample_size` on all draws of all chains. Seconds are wall-clock;",
        "CPU seconds in parentheses.",
        "",
    ]
    if not have_jax:
        lines += [
            f"**BlackJAX column skipped**: {JAX_PYTHON.relative_to(ROOT)} not found (run "
            "`bash benchmarks/jax-env.sh`).",
            "",
        ]
    lines += [
        "| target | symgen eager s | symgen compiled s (incl. compile) | BlackJAX s (incl. compile) | "
        "ESS eager / compiled / BlackJAX | acceptance eager / compiled / BlackJAX | "
        "ESS/s compiled : BlackJAX (incl. compile) | ESS/s eager : BlackJAX | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, j = r["symgen"], r["blackjax"]
        e_rate = s["eager_ess"] / s["eager_wall"]
        c_rate = s["compiled_ess"] / s["compiled_wall"]
        c_first = s["compiled_ess"] / s["compiled_first_wall"]
        if j is None:
            jcol, ratio_c, ratio_e, ess_j, acc_j = "skipped", "-", "-", "-", "-"
        else:
            j_rate, j_first = j["ess"] / j["steady_wall"], j["ess"] / j["first_wall"]
            jcol = f"{j['steady_wall']:.2f} ({j['steady_cpu']:.2f} CPU) ({j['first_wall']:.2f})"
            ratio_c = f"**{c_rate / j_rate:.2f}x** ({c_first / j_first:.2f}x)"
            ratio_e = f"{e_rate / j_rate:.2f}x"
            ess_j, acc_j = f"{j['ess']:.0f}", f"{j['acc']:.2f}"
        lines.append(
            f"| {r['name']} | {s['eager_wall']:.2f} ({s['eager_cpu']:.2f} CPU) | "
            f"{s['compiled_wall']:.2f} ({s['compiled_cpu']:.2f} CPU) ({s['compiled_first_wall']:.2f}) | "
            f"{jcol} | "
            f"{s['eager_ess']:.0f} / {s['compiled_ess']:.0f} / {ess_j} | "
            f"{s['eager_acc']:.2f} / {s['compiled_acc']:.2f} / {acc_j} | {ratio_c} | {ratio_e} | "
            f"{r['load_before']:.1f}-{r['load_after']:.1f} |"
        )
    if have_jax and rows:
        errs = ", ".join(f"{r['kind']} {r['blackjax']['check_error']:.1e}" for r in rows)
        lines += [
            "",
            f"{rows[0]['blackjax']['versions']}; jax vs torch log-density, max relative error: {errs}.",
        ]
    lines.append("")
    return lines


if __name__ == "__main__":  # quick look: python benchmarks/_vs_blackjax.py [kind]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    torch.set_num_threads(1)
    print("\n".join(markdown(run_vs_blackjax(repeats=2, only=sys.argv[1] if len(sys.argv) > 1 else None))))
