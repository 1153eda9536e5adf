"""Throughput of symgen's image Glow vs normflows' Glow at the same architecture, in one process.

Both models: ``levels`` levels of squeeze + ``depth`` Glow steps (ActNorm, LU 1x1 conv, affine coupling
with a sigmoid(h + 2) scale and a conv3x3-ReLU-conv1x1-ReLU-conv3x3 conditioner of ``width`` channels),
channel split, standard Gaussian for the factored-out halves (symgen ``learn_prior=False``, normflows
``DiagGaussian(trainable=False)``); the parameter counts are printed to show they match. Measured in eval
mode at batch 64: ``log_prob`` (no grad), sampling (no grad) and one training step (``log_prob`` +
backward). Calls alternate between the two models; each entry is the best of ``--repeats`` calls, in
wall-clock time and in process CPU time (steadier on a shared machine). Ratio = symgen images/s divided by
normflows images/s (> 1 means symgen is faster).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_flows.py`` (writes
benchmarks/results/flows_throughput.md). normflows is a bench-only dependency (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from collections.abc import Callable
from pathlib import Path

import normflows as nf
import torch

from _bench import git_head, measure  # noqa: E402  (benchmarks/ is on sys.path)
from symgen.flows import build_flow

__all__ = ["build_normflows_glow", "main", "measure"]

ROOT = Path(__file__).resolve().parents[1]


def build_normflows_glow(
    shape: tuple[int, int, int], levels: int, depth: int, width: int
) -> nf.MultiscaleFlow:
    """normflows' Glow as in its Glow example, with a fixed standard-normal base per level."""
    c, h, w = shape
    q0, merges, flows = [], [], []
    for i in range(levels):
        blocks = [
            nf.flows.GlowBlock(c * 2 ** (levels + 1 - i), width, split_mode="channel", scale=True)
            for _ in range(depth)
        ]
        flows.append([*blocks, nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
        else:
            latent = (c * 2 ** (levels + 1), h // 2**levels, w // 2**levels)
        q0.append(nf.distributions.DiagGaussian(latent, trainable=False))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


def _train_step(log_prob: Callable[[], torch.Tensor], params: list) -> None:
    (-log_prob().mean()).backward()
    for p in params:
        p.grad = None


def bench_config(
    shape: tuple[int, int, int], levels: int, depth: int, width: int, batch: int, repeats: int
) -> list:
    """Rows ``(config..., task, wall img/s symgen, normflows, CPU-time img/s symgen, normflows)``."""
    torch.manual_seed(0)
    ours = build_flow("glow", event_shape=shape, levels=levels, depth=depth, width=width, learn_prior=False)
    theirs = build_normflows_glow(shape, levels, depth, width)
    x = torch.rand(batch, *shape) * 2 - 1
    with torch.no_grad():  # data-dependent ActNorm init on the same batch for both
        ours.initialize(x)
        theirs.log_prob(x, None)
    ours.eval()
    theirs.eval()
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    dist = ours()
    p_ours, p_theirs = list(ours.parameters()), list(theirs.parameters())
    tasks = [
        ("log_prob", lambda: dist.log_prob(x), lambda: theirs.log_prob(x, None), True),
        ("sample", lambda: dist.sample((batch,)), lambda: theirs.sample(batch), True),
        (
            "train step (log_prob + backward)",
            lambda: _train_step(lambda: dist.log_prob(x), p_ours),
            lambda: _train_step(lambda: theirs.log_prob(x, None), p_theirs),
            False,
        ),
    ]
    rows = []
    for task, fo, ft, no_grad in tasks:
        with torch.set_grad_enabled(not no_grad):
            t = measure({"symgen": fo, "normflows": ft}, repeats)
        speeds = [batch / t[k][i] for i in (0, 1) for k in ("symgen", "normflows")]
        rows.append((shape, levels, depth, width, n_ours, n_theirs, task, *speeds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared box)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "flows_throughput.md")
    parser.add_argument("--quick", action="store_true", help="one small configuration (smoke run)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # normflows calls the deprecated torch.lu
    torch.set_num_threads(args.threads)
    configs = [((1, 28, 28), 2, 8, 128), ((3, 32, 32), 3, 8, 128)]
    if args.quick:
        configs = [((1, 8, 8), 2, 2, 16)]
    rows = []
    for config in configs:
        for r in bench_config(*config, args.batch, args.repeats):
            rows.append(r)
            print(
                f"{r[0]} L={r[1]} K={r[2]} W={r[3]} {r[6]:<33} "
                f"wall {r[7] / r[8]:.2f}x  cpu {r[9] / r[10]:.2f}x"
            )
    quick = " --quick" if args.quick else ""
    lines = [
        "# Flow throughput: symgen Glow vs normflows Glow",
        "",
        f"Command: `PYTHONPATH=src .venv/bin/python benchmarks/bench_flows.py --batch {args.batch} "
        f"--repeats {args.repeats} --threads {args.threads}{quick}`",
        "",
        f"Seed 0; commit `{git_head()}`; torch {torch.__version__}, normflows {nf.__version__}; "
        f"{platform.machine()} CPU, {args.threads} torch thread(s), {os.cpu_count()} cores (shared); batch "
        f"{args.batch}, float32, eval mode. Best of {args.repeats} interleaved calls; images/s from "
        "wall-clock "
        "time and from process CPU time. Ratio = symgen / normflows (> 1: symgen faster). Both models are "
        "built from the same hyperparameters and have the same parameter count.",
        "",
        "| shape | L | K | width | params symgen / normflows | task | symgen img/s | normflows img/s "
        "| ratio (wall) | ratio (CPU time) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for shape, levels, depth, width, n_o, n_t, task, wo, wt, co, ct in rows:
        lines.append(
            f"| {'x'.join(map(str, shape))} | {levels} | {depth} | {width} | {n_o:,} / {n_t:,} | {task} "
            f"| {wo:.1f} | {wt:.1f} | {wo / wt:.2f}x | {co / ct:.2f}x |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
