"""Sampler benchmarks, each a ratio against a baseline measured in the same process.

(a) Overhead: ``run_chain(Langevin)`` vs a bare hand-written ``torch.autograd.grad`` Langevin loop on the
    same MLP energy (target: <= 10% slower).
(b) ESS per second: symgen's batched HMC (64 chains) vs pyro's ``pyro.infer.mcmc`` HMC (one chain: pyro
    runs chains in separate processes) on the same 50-d correlated Gaussian with the same fixed step size
    and number of leapfrog steps; ESS by ``symgen.diagnostics.effective_sample_size`` on both
    (target: ratio >= 10).
(c) Throughput: achieved GFLOP/s of Langevin steps on a conv energy (batch 64, 1x28x28; FLOPs counted by
    ``torch.utils.flop_counter`` for forward + input-gradient backward) as a fraction of the fp32 GEMM
    throughput measured in the same run (best of square matmuls of size 512-2048) (target: >= 40%).
(d) Memory: peak resident memory of a K-step chain without a trajectory, K = 10 vs K = 200, each in a
    fresh subprocess (``resource.getrusage``), minus the memory after imports (target ratio <= 1.1); the
    ``differentiable=True`` mode, which must keep the graph, is measured as a positive control.

(vs BlackJAX) ESS per second of symgen HMC eager and compiled (``run_chain(compile=True)``) vs BlackJAX HMC
    on four targets (50-d Gaussian, MLP, conv energy, 2-D flow-tilted latent density); see
    ``_vs_blackjax.py`` (targets: compiled >= 1.0x BlackJAX on the conv energy and the MLP, >= 0.5x on the
    Gaussian, steady state).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_samplers.py`` (writes
benchmarks/results/samplers.md). pyro is a dev/bench dependency (``pip install -e .[bench]``); jax and
blackjax live in their own environment, benchmarks/.venv-jax, made by ``bash benchmarks/jax-env.sh``
(the BlackJAX column is skipped with a message without it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from _bench import git_head, measure  # noqa: E402  (benchmarks/ is on sys.path)
from _vs_blackjax import markdown as vs_markdown  # noqa: E402
from _vs_blackjax import run_vs_blackjax  # noqa: E402
from symgen.diagnostics import effective_sample_size
from symgen.samplers import HMC, Langevin, run_chain

__all__ = ["main", "bench_overhead", "bench_ess", "bench_flops", "bench_memory", "ConvEnergy"]

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- (a) overhead
class MLPEnergy(nn.Module):
    def __init__(self, d: int = 64, h: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def bare_langevin(energy: Callable, x0: torch.Tensor, n_steps: int, s: float) -> torch.Tensor:
    """The baseline: the loop every paper's code writes by hand."""
    x = x0
    for _ in range(n_steps):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(energy(x).sum(), x)
        x = x.detach() + 0.5 * s * s * g + s * torch.randn_like(x)
    return x.detach()


def bench_overhead(repeats: int, n_steps: int = 50) -> list[tuple[str, float, float, float]]:
    rows = []
    configs = [("MLP 64-256-256-1, batch 256", MLPEnergy(), torch.randn(256, 64))]
    configs.append(
        ("2-d Gaussian, batch 64 (pure Python overhead)", lambda x: -0.5 * (x**2).sum(1), torch.randn(64, 2))
    )
    for name, energy, x0 in configs:
        if isinstance(energy, nn.Module):
            energy.requires_grad_(False)
        kernel = Langevin(step_size=0.01)
        t = measure(
            {
                "bare": lambda e=energy, x=x0: bare_langevin(e, x, n_steps, 0.01),
                "symgen": lambda e=energy, x=x0, k=kernel: run_chain(k, e, x, n_steps),
                "norecord": lambda e=energy, x=x0, k=kernel: run_chain(k, e, x, n_steps, record=False),
            },
            repeats,
        )
        per_step_us = (t["symgen"][1] - t["bare"][1]) / n_steps * 1e6
        norecord_us = (t["norecord"][1] - t["bare"][1]) / n_steps * 1e6
        rows.append(
            (
                name,
                t["symgen"][1] / t["bare"][1],
                t["symgen"][0] / t["bare"][0],
                per_step_us,
                t["norecord"][1] / t["bare"][1],
                norecord_us,
            )
        )
    return rows


# -------------------------------------------------------------------------------------------- (b) ESS
def gaussian_50d(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(50, 50, generator=g))
    cov = q @ torch.diag(torch.linspace(0.25, 1.0, 50)) @ q.T
    return torch.linalg.inv(cov), cov


def bench_ess(n_samples: int, warmup: int, step_size: float, n_leapfrog: int) -> dict[str, float]:
    import pyro
    from pyro.infer.mcmc import HMC as PyroHMC
    from pyro.infer.mcmc import MCMC

    prec, _ = gaussian_50d()

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x @ prec) * x).sum(-1)

    torch.manual_seed(0)
    kernel = HMC(step_size=step_size, n_leapfrog=n_leapfrog, adaptation=None)
    start = time.perf_counter()
    _, trace = run_chain(kernel, log_prob, torch.randn(64, 50), warmup + n_samples, keep_trajectory=True)
    ours_s = time.perf_counter() - start
    ours = trace.positions[warmup:].transpose(0, 1)  # (chains, draws, 50)

    pyro.set_rng_seed(0)
    pk = PyroHMC(
        potential_fn=lambda p: -log_prob(p["x"]),
        step_size=step_size,
        num_steps=n_leapfrog,
        adapt_step_size=False,
        adapt_mass_matrix=False,
    )
    mcmc = MCMC(
        pk,
        num_samples=n_samples,
        warmup_steps=warmup,
        initial_params={"x": torch.randn(50)},
        disable_progbar=True,
    )
    start = time.perf_counter()
    mcmc.run()
    pyro_s = time.perf_counter() - start
    theirs = mcmc.get_samples()["x"][None]  # (1, draws, 50)

    out = {"ours_s": ours_s, "pyro_s": pyro_s, "ours_acc": float(trace.acceptance_rate(False).mean())}
    for stat, fn in (("x", lambda t: t), ("x2", lambda t: t * t)):
        out[f"ours_ess_{stat}"] = float(effective_sample_size(fn(ours)).mean())
        out[f"pyro_ess_{stat}"] = float(effective_sample_size(fn(theirs)).mean())
        out[f"ratio_{stat}"] = (out[f"ours_ess_{stat}"] / ours_s) / (out[f"pyro_ess_{stat}"] / pyro_s)
    return out


# ------------------------------------------------------------------------------------------ (c) FLOP/s
class ConvEnergy(nn.Module):
    """A CoopFlow/short-run-EBM-style conv energy for 1x28x28 images."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 3, 1, 1),
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(4 * w, 1, 7, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def step_flops(energy: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one energy evaluation + input gradient (what a Langevin step computes)."""
    from torch.utils.flop_counter import FlopCounterMode

    xr = x.clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        energy(xr).sum().backward(inputs=[xr])  # same ops as autograd.grad(..., xr)
    return counter.get_total_flops()


def gemm_gflops(repeats: int) -> dict[str, float]:
    """Best fp32 GEMM GFLOP/s (process CPU time, n = 512-2048) of torch.mm (MKL), numpy (OpenBLAS) and a
    batch-64 8x8 1x1 convolution, i.e. a (4096 x n) @ (n x n) GEMM in oneDNN: MKL is slow on AMD CPUs,
    so the machine's GEMM rate is taken as the maximum of the three."""
    best = {"torch.mm": 0.0, "numpy": 0.0, "conv1x1": 0.0}
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        an, bn = a.numpy(), b.numpy()
        xc, wc = torch.randn(64, n, 8, 8), b[:, :, None, None].contiguous()  # (4096 x n) @ (n x n)
        t = measure(
            {
                "torch.mm": lambda a=a, b=b: a @ b,
                "numpy": lambda a=an, b=bn: a @ b,
                "conv1x1": lambda x=xc, w=wc: torch.nn.functional.conv2d(x, w),
            },
            repeats,
        )
        flops = {"torch.mm": 2 * n**3, "numpy": 2 * n**3, "conv1x1": 2 * 4096 * n * n}
        for k in best:
            best[k] = max(best[k], flops[k] / t[k][1] / 1e9)
    return best


def bench_flops(repeats: int, n_steps: int = 10) -> dict[str, float]:
    torch.manual_seed(0)
    energy = ConvEnergy().requires_grad_(False)
    x0 = torch.randn(64, 1, 28, 28)
    flops = step_flops(energy, x0)
    kernel = Langevin(step_size=0.01)
    t = measure({"chain": lambda: run_chain(kernel, energy, x0, n_steps)}, repeats)["chain"][1]
    achieved = flops * n_steps / t / 1e9
    gemm = gemm_gflops(repeats)
    peak = max(gemm.values())
    return {
        "gflop_per_step": flops / 1e9,
        "achieved": achieved,
        "gemm": peak,
        "fraction": achieved / peak,
        **{f"gemm_{k}": v for k, v in gemm.items()},
    }


# ------------------------------------------------------------------------------------------ (d) memory
_MEMORY_CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, {bench_dir!r})
from bench_samplers import ConvEnergy
from symgen.samplers import Langevin, run_chain
torch.set_num_threads(1)
k, differentiable = int(sys.argv[1]), sys.argv[2] == "1"
torch.manual_seed(0)
energy = ConvEnergy(32)
x0 = torch.randn(128, 1, 28, 28, requires_grad=differentiable)
with open("/proc/self/statm") as f:  # current resident set after imports (pages)
    base = int(f.read().split()[1]) * resource.getpagesize() // 1024
x, trace = run_chain(Langevin(step_size=0.01), energy, x0, k, differentiable=differentiable)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"base_kb": base, "peak_kb": peak}}))
"""


def peak_memory_mb(k: int, differentiable: bool) -> float:
    code = _MEMORY_CHILD.format(bench_dir=str(ROOT / "benchmarks"))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code, str(k), "1" if differentiable else "0"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    return (rec["peak_kb"] - rec["base_kb"]) / 1024


def bench_memory() -> dict[str, float]:
    res = {f"k{k}": peak_memory_mb(k, False) for k in (10, 200)}
    res.update({f"diff_k{k}": peak_memory_mb(k, True) for k in (2, 8)})
    return res


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared box)"
    )
    parser.add_argument("--ess-samples", type=int, default=1000)
    parser.add_argument(
        "--vs-repeats", type=int, default=3, help="steady-state repeats of the vs BlackJAX runs"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "samplers.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    overhead = bench_overhead(args.repeats)
    print("overhead", overhead)
    ess = bench_ess(args.ess_samples, warmup=200, step_size=0.15, n_leapfrog=10)
    print("ess", ess)
    flops = bench_flops(args.repeats)
    print("flops", flops)
    mem = bench_memory()
    print("memory", mem)
    load = os.getloadavg()
    vs = run_vs_blackjax(repeats=args.vs_repeats)

    command = (
        f"PYTHONPATH=src .venv/bin/python benchmarks/bench_samplers.py --repeats {args.repeats} "
        f"--threads {args.threads} --ess-samples {args.ess_samples} --vs-repeats {args.vs_repeats}"
    )
    lines = [
        "# Sampler benchmarks (ratios measured in one process)",
        "",
        f"Command: `{command}`",
        "",
        f"Seed 0; commit `{git_head()}`; torch {torch.__version__}; {platform.machine()} CPU, "
        f"{args.threads} torch thread(s), {os.cpu_count()} cores (shared with other jobs). Times are the "
        f"best of {args.repeats} interleaved calls. Load average (1, 5, 15 min) before the vs BlackJAX "
        f"section: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (`uptime`; the other sections ran before it).",
        "",
        "## (a) Per-step overhead of `run_chain(Langevin)` vs a bare autograd.grad loop (target <= 1.10)",
        "",
        "| energy | ratio (CPU time) | ratio (wall) | extra CPU per step | `record=False`: ratio (CPU) | "
        "extra CPU per step |",
        "|---|---|---|---|---|---|",
        *[
            f"| {n} | {c:.3f} | {w:.3f} | {us:.0f} us | {cn:.3f} | {usn:.0f} us |"
            for n, c, w, us, cn, usn in overhead
        ],
        "",
        "The 10% target applies to a real energy (first row); the second row shows the fixed Python cost",
        "per step (state/info records, grad norm) on an energy that costs almost nothing. `record=False`",
        "(`run_chain(..., record=False)`) skips the per-step records; the gradient norm is computed only",
        "when a record or a callback reads it.",
        "",
        "## (b) ESS per second: symgen HMC (64 batched chains) vs pyro HMC (1 chain) (target >= 10x)",
        "",
        "50-d Gaussian, covariance eigenvalues in [0.25, 1]; both: step size 0.15, 10 leapfrog steps, no",
        f"adaptation, 200 warm-up + {args.ess_samples} draws; ESS = mean over coordinates of",
        "`symgen.diagnostics.effective_sample_size` (all chains pooled); seconds include warm-up.",
        "",
        "| sampler | seconds | ESS (x) | ESS/s (x) | ESS (x^2) | ESS/s (x^2) |",
        "|---|---|---|---|---|---|",
        f"| symgen HMC, 64 chains (acceptance {ess['ours_acc']:.2f}) | {ess['ours_s']:.2f} | "
        f"{ess['ours_ess_x']:.0f} | {ess['ours_ess_x'] / ess['ours_s']:.0f} | {ess['ours_ess_x2']:.0f} | "
        f"{ess['ours_ess_x2'] / ess['ours_s']:.0f} |",
        f"| pyro HMC, 1 chain | {ess['pyro_s']:.2f} | {ess['pyro_ess_x']:.0f} | "
        f"{ess['pyro_ess_x'] / ess['pyro_s']:.0f} | {ess['pyro_ess_x2']:.0f} | "
        f"{ess['pyro_ess_x2'] / ess['pyro_s']:.0f} |",
        f"| **ratio** | | | **{ess['ratio_x']:.1f}x** | | **{ess['ratio_x2']:.1f}x** |",
        "",
        "ESS(x) can exceed the number of draws: fixed-length HMC on a Gaussian is antithetic for the mean;",
        "ESS(x^2) is the conservative figure.",
        "",
        "## (c) Langevin throughput on a conv energy (batch 64, 1x28x28) vs fp32 GEMM (target >= 40%)",
        "",
        "Energy: conv3x3(1->64) - conv4x4/2(64->128) - conv4x4/2(128->256) - conv7x7(256->1), SiLU;",
        f"{flops['gflop_per_step']:.2f} GFLOP per step (forward + input-gradient backward, FlopCounterMode).",
        "",
        "GFLOP/s from process CPU time (one thread). GEMM: best over n = 512, 1024, 2048 of torch.mm (MKL: "
        f"{flops['gemm_torch.mm']:.0f}), numpy matmul (OpenBLAS: {flops['gemm_numpy']:.0f}) and a 1x1 conv "
        f"as a (4096 x n) @ (n x n) GEMM (oneDNN: {flops['gemm_conv1x1']:.0f}).",
        "",
        "| Langevin GFLOP/s | machine fp32 GEMM GFLOP/s | fraction |",
        "|---|---|---|",
        f"| {flops['achieved']:.1f} | {flops['gemm']:.1f} | {100 * flops['fraction']:.0f}% |",
        "",
        "## (d) Peak memory of a K-step chain without trajectory (target ratio <= 1.1)",
        "",
        "Conv energy (width 32), batch 128; peak RSS (`ru_maxrss`) of a fresh subprocess minus its resident",
        "memory after imports and model construction.",
        "",
        "| mode | K | peak extra memory (MB) |",
        "|---|---|---|",
        f"| default | 10 | {mem['k10']:.1f} |",
        f"| default | 200 | {mem['k200']:.1f} |",
        f"| differentiable=True (positive control, keeps the graph) | 2 | {mem['diff_k2']:.1f} |",
        f"| differentiable=True (positive control, keeps the graph) | 8 | {mem['diff_k8']:.1f} |",
        "",
        f"Ratio K=200 / K=10 (default): **{mem['k200'] / mem['k10']:.3f}**; differentiable K=8 / K=2: "
        f"{mem['diff_k8'] / mem['diff_k2']:.2f} (memory grows with K only when the graph is kept).",
        "",
        *vs_markdown(vs),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
