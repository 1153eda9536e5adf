"""Check that a refactoring of the LFBM family changed no result: train every LFBM-family model for a few
steps with a fixed seed under two source trees and compare the parameters bit for bit.

    python benchmarks/check_lfbm_split.py --old OLD_SRC --new src --steps 15

``OLD_SRC`` is the ``src`` folder of the earlier code (e.g. ``git worktree add /tmp/old COMMIT``); each
tree is imported in its own subprocess (one thread), so both run in one command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

JOB = """
import sys, tempfile, torch
from symgen.config import resolve_config
from symgen.runs import train
out = {}
for name in ["lfbm", "abp", "lebm", "lfbm_vae"]:
    cfg = resolve_config(name, sys.argv[2], [f"train.steps={sys.argv[3]}", "train.log_every=5",
                                             "data.batch_size=32", "seed=0"])
    with tempfile.TemporaryDirectory() as d:
        t = train(cfg, d + "/r", progress=False)
        out[name] = {k: v.clone() for k, v in t.model.state_dict().items()}
torch.save(out, sys.argv[1])
"""


def run(src: Path, config: Path, steps: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", JOB, str(out), str(config), str(steps)], env=env, check=True, cwd="/"
    )
    return torch.load(out, weights_only=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, type=Path)
    p.add_argument("--new", default=Path("src"), type=Path)
    p.add_argument("--config", default=Path("configs/lfbm/digits.yaml").resolve(), type=Path)
    p.add_argument("--steps", type=int, default=15)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        old = run(args.old, args.config.resolve(), args.steps, Path(d) / "old.pt")
        new = run(args.new, args.config.resolve(), args.steps, Path(d) / "new.pt")
    for name in old:
        same = old[name].keys() == new[name].keys() and all(
            torch.equal(old[name][k], new[name][k]) for k in old[name]
        )
        print(f"{name:10s} parameters bit-identical: {same}")


if __name__ == "__main__":
    main()
