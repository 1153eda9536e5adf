"""Data-space HMC on the exact 8 Gaussians: the reference for ``ntebm-toy``'s ``rhat_data_hmc``.

``mixing`` (``symgen.tasks.mixing``) runs data-space HMC on a learned ``p_theta``; how well such chains can
mix at all is set by the target. This runs the same sampler settings (64 chains, 2000 steps, 400 burn-in
with multiplicative step adaptation toward 0.651, 3 leapfrog steps, initial step 0.15) on the toy's exact
log-density, started from exact samples, and prints the same summary (mean split R-hat of the two
coordinates, first lag with mean autocorrelation < 0.1, modes visited per chain).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ntebm_truth_mixing.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import torch

from symgen.data import load
from symgen.samplers import HMC, run_chain
from symgen.tasks.mixing import mixing_summary


def truth_mixing(seed: int, dataset: str = "8gaussians") -> dict[str, float]:
    """``mixing_summary`` of data-space HMC chains on the exact density of ``dataset``."""
    toy = load(dataset)
    gen = torch.Generator().manual_seed(seed)
    x0 = toy.sample(64, generator=gen).float()
    kernel = HMC(
        step_size=0.15, n_leapfrog=3, adaptation="multiplicative", target_accept=0.651, generator=gen
    )
    _, trace = run_chain(
        kernel, lambda x: toy.log_prob(x.double()).float(), x0, 2000, keep_trajectory=True, adapt_steps=400
    )
    summary, _, _ = mixing_summary(trace.samples().transpose(0, 1), means=toy.means.float())
    return {**summary, "step_size": float(trace.state.step_size.mean())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", default="8gaussians")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for s in args.seeds:
        r = truth_mixing(s, args.dataset)
        print(f"seed {s}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
