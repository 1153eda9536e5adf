"""Why vector flows standardise their input: NSF and RealNVP on the spiral scaled by ``--scale``.

Each flow (zuko's ``nsf`` with its default [-5, 5] spline box, ``realnvp``) is trained by maximum likelihood
on raw and on standardised input (``symgen.flows.standardized``), same seed, budget and optimizer; the table
gives the grid KL to the exact (scaled) density and the test NLL of 20000 held-out points. The exact density
of ``s * x`` is ``p(x / s) / s^2``, so its entropy is the spiral's plus ``2 log s``.

Run: ``PYTHONPATH=src python benchmarks/flow_standardize.py`` (writes benchmarks/results/flow_standardize.md).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch

from _bench import git_head  # noqa: E402  (benchmarks/ is on sys.path)
from symgen.data import load
from symgen.flows import build_flow, standardized
from symgen.metrics.toy import grid_kl

ROOT = Path(__file__).resolve().parents[1]


def train_one(name: str, standardise: bool, data, scale: float, steps: int, batch: int, lr: float, seed: int):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    flow = build_flow(name, event_shape=(2,))
    if standardise:
        flow = standardized(flow)
        flow.initialize(data.sample(batch, generator=gen) * scale)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    for _ in range(steps):
        x = data.sample(batch, generator=gen) * scale
        loss = -flow().log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow.eval()
    test = data.sample(20000, generator=torch.Generator().manual_seed(10_000 + seed)) * scale
    with torch.no_grad():
        nll = float(-flow().log_prob(test).mean())
        (x0, x1), (y0, y1) = data.bounds
        bounds = ((x0 * scale, x1 * scale), (y0 * scale, y1 * scale))

        def true_log_prob(x: torch.Tensor) -> torch.Tensor:
            return data.log_prob(x / scale) - 2 * math.log(scale)

        kl = grid_kl(lambda x: flow().log_prob(x), true_log_prob, bounds, resolution=256)
    return kl, nll


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=4.5)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "flow_standardize.md"))
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load("spiral")
    t0 = time.time()
    test = data.sample(20000, generator=torch.Generator().manual_seed(10_000 + args.seed))
    true_nll = float(-data.log_prob(test).mean()) + 2 * math.log(args.scale)
    rows = []
    for name in ("nsf", "realnvp"):
        raw = train_one(name, False, data, args.scale, args.steps, args.batch, args.lr, args.seed)
        std = train_one(name, True, data, args.scale, args.steps, args.batch, args.lr, args.seed)
        rows.append(f"| `{name}` | {raw[0]:.3g} ({raw[1]:.2f}) | {std[0]:.3g} ({std[1]:.2f}) |")
        print(rows[-1], flush=True)
    lines = [
        "# Vector flows on data outside their range: raw vs standardised input",
        "",
        f"Spiral scaled by {args.scale} (|x| up to about {3.1 * args.scale:.0f}); {args.steps} Adam steps, "
        f"batch {args.batch}, lr {args.lr}; grid KL(true || flow) on a 256x256 grid over the scaled bounds, "
        f"and test NLL (nats) of 20000 held-out points. True test NLL (entropy estimate): {true_nll:.2f}.",
        "",
        "| flow | raw input: KL (test NLL) | standardised: KL (test NLL) |",
        "|---|---|---|",
        *rows,
        "",
        "- command: `PYTHONPATH=src python benchmarks/flow_standardize.py "
        f"--scale {args.scale} --steps {args.steps} --batch {args.batch} --lr {args.lr} --seed {args.seed}`",
        f"- seed: {args.seed}; torch {torch.__version__}, 1 thread; load average at end "
        f"{os.getloadavg()[0]:.1f}",
        f"- commit: `{git_head()}`",
        f"- seconds: {time.time() - t0:.0f}",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
