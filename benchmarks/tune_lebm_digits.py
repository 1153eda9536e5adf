"""Pick the EBM-prior learning rate of LEBM on the 8x8 digits with a validation split (issue #9, item 6).

The digits training split (symgen's default split, seed 0) is divided once more: 90% to train, 10% to
validate; the test split is not touched. For each candidate ``lr.ebm_prior`` one LEBM is trained with
``configs/lfbm/digits.yaml`` (everything else as in the experiments) and scored on the validation images:

* ``fd_clf_val`` -- Frechet distance in the digits classifier's features between model samples and the
  validation images (sample quality, which is what the prior's learning rate governs);
* ``val_score`` -- mean ``-log p(x, z)`` of the validation images, ``z`` from the noise-free test chain
  (the anomaly protocol's model-selection score).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/tune_lebm_digits.py --lrs 2e-5 1e-4 1e-3 [--steps 1200]``;
prints one Markdown table row per candidate.
"""

from __future__ import annotations

import argparse
import time

import torch

from symgen.config import resolve_config
from symgen.data.digits import load_digits
from symgen.metrics import compute_metric
from symgen.models.base import DataInfo, StepContext
from symgen.registry import MODELS


class _Context(StepContext):
    def __init__(self, opts: dict[str, torch.optim.Optimizer], generator: torch.Generator) -> None:
        super().__init__(step=0, device=torch.device("cpu"), generator=generator)
        self.opts = opts

    def optimize(self, name: str, loss: torch.Tensor) -> float:
        opt = self.opts[name]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return 0.0


def run(lr: float, steps: int, seed: int) -> dict[str, float]:
    cfg = resolve_config("lebm", "configs/lfbm/digits.yaml", [f"model.lr.ebm_prior={lr}"])
    train = load_digits("train").x
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    n_val = len(train) // 10
    x_val, x_fit = train[perm[:n_val]], train[perm[n_val:]]
    torch.manual_seed(seed)
    mcfg = {k: v for k, v in cfg["model"].items() if k != "name"}
    model = MODELS.get("lebm").from_config(mcfg, DataInfo(name="digits", kind="image", event_shape=(1, 8, 8)))
    gen = torch.Generator().manual_seed(seed)
    ctx = _Context(model.configure_optimizers(), gen)
    batch = int(cfg["data"]["batch_size"])
    start = time.time()
    for step in range(steps):
        idx = torch.randint(len(x_fit), (batch,), generator=gen)
        ctx.step = step
        model.training_step(x_fit[idx], ctx)
    model.eval()
    with torch.no_grad():
        fake = model.sample(len(x_val), generator=gen)
    fd = compute_metric("fd_clf", {"real": x_val, "fake": fake}, dataset="digits")["fd_clf"]
    z = model.infer(x_val, test=True, generator=gen)
    with torch.no_grad():
        score = float(-model.log_joint(x_val, z).mean())
    return {"fd_clf_val": fd, "val_score": score, "seconds": time.time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[2e-5, 1e-4, 1e-3])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| lr.ebm_prior | fd_clf (val) | -log p(x, z) (val) | seconds |\n|---|---|---|---|", flush=True)
    for lr in args.lrs:
        out = run(lr, args.steps, args.seed)
        print(
            f"| {lr:g} | {out['fd_clf_val']:.3f} | {out['val_score']:.2f} | {out['seconds']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
