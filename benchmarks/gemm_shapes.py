"""One-core fp32 products of the MLP target's shapes: oneDNN linear, MKL ``torch.mm`` and (if
benchmarks/.venv-jax exists) XLA's dot, to explain the "vs BlackJAX" MLP ratio in results/samplers.md.

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/gemm_shapes.py

Shapes ``(M, K, N)``: the forward products of a 64-256-256 MLP on 256 chains and the input-gradient
products of its backward pass. Best of 5 blocks of timed calls after a warm-up; XLA: a 100-step
``lax.scan`` of the product under one ``jax.jit`` divided by 100.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

SHAPES = [(256, 64, 256), (256, 256, 256), (256, 256, 64)]
JAX_PYTHON = Path(__file__).resolve().parent / ".venv-jax" / "bin" / "python"

JAX_SNIPPET = """
import os, sys, time
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import jax, jax.numpy as jnp, numpy as np
M, K, N = map(int, sys.argv[1:4])
a = jnp.asarray(np.random.randn(M, K).astype(np.float32))
b = jnp.asarray(np.random.randn(K, N).astype(np.float32)) * 1e-3
def f(a, b):
    def body(c, _):
        y = c @ b
        return c + y[:, :K].sum() * 0 + 1e-6, y[0, 0]
    return jax.lax.scan(body, a, None, length=100)
f = jax.jit(f)
jax.block_until_ready(f(a, b))
best = 1e9
for _ in range(5):
    t = time.perf_counter(); jax.block_until_ready(f(a, b)); best = min(best, (time.perf_counter() - t) / 100)
print(best)
"""


def bench(fn, n: int = 200) -> float:
    """Best per-call seconds over 5 blocks of ``n // 5`` calls."""
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n // 5):
            fn()
        best = min(best, (time.perf_counter() - t) / (n // 5))
    return best


def main() -> None:
    torch.set_num_threads(1)
    lin = torch.ops.mkldnn._linear_pointwise
    print("| M x K x N | oneDNN linear us (GFLOP/s) | MKL torch.mm us | XLA dot us (GFLOP/s) |")
    print("|---|---|---|---|")
    for m, k, n in SHAPES:
        a, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
        flops = 2 * m * k * n
        t_dnn = bench(lambda a=a, w=w, b=b: lin(a, w, b, "none", [], ""))
        t_mkl = bench(lambda a=a, w=w, b=b: torch.addmm(b, a, w.t()))
        xla = "skipped (no benchmarks/.venv-jax)"
        if JAX_PYTHON.exists():
            out = subprocess.run(
                [str(JAX_PYTHON), "-c", JAX_SNIPPET, str(m), str(k), str(n)],
                capture_output=True,
                text=True,
                check=True,
            )
            t_xla = float(out.stdout.strip().splitlines()[-1])
            xla = f"{t_xla * 1e6:.0f} ({flops / t_xla / 1e9:.0f})"
        print(
            f"| {m} x {k} x {n} | {t_dnn * 1e6:.0f} ({flops / t_dnn / 1e9:.0f}) | "
            f"{t_mkl * 1e6:.0f} | {xla} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
