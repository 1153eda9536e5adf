"""LFBM training throughput on the digits: symgen vs a minimal hand-written loop of Algorithm 1, one process.

Three ways to run the same training step (Algorithm 1 of the LFBM paper: K-step Langevin posterior
inference from N(0, I), one Adam step of the flow prior on -mean l(z) (Eq. (6)), one Adam step of the
generator on the Gaussian negative log-likelihood (Eq. (7))), all on identical copies of the same networks
(the digits config's MLP generator and 5-step fully connected Glow) and the same batches:

* ``hand loop``    -- about twenty lines of plain torch (the baseline);
* ``training_step`` -- :meth:`symgen.models.latent.LatentModel.training_step` with a bare optimizer context;
* ``Trainer``      -- the full :class:`symgen.trainer.Trainer` (finite checks, logging, grad norms).

Calls interleave between the three and each entry is the best of ``--repeats`` blocks of ``--steps``
steps, in wall-clock and process CPU time (steadier on a shared machine). Ratio = images/s divided by the
hand loop's (target >= 0.97: symgen's K-step chain evaluates K gradients, like the hand loop). Because
the three run one after the other in every round, the per-round CPU-time ratios are also reported
(median and range over rounds): load on a shared machine that drifts between rounds cancels in them.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_lfbm_throughput.py`` (writes
benchmarks/results/lfbm_throughput.md).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

import symgen.data
from _bench import bare_context, git_head, measure  # noqa: E402  (benchmarks/ is on sys.path)
from symgen.batches import TensorStream
from symgen.config import resolve_config
from symgen.models.base import DataInfo
from symgen.registry import MODELS
from symgen.rundir import RunDir
from symgen.trainer import Trainer

__all__ = ["hand_step", "main"]

ROOT = Path(__file__).resolve().parents[1]


def hand_step(gen: torch.nn.Module, flow: torch.nn.Module, opts: dict, x: torch.Tensor, cfg: dict,
              rng: torch.Generator) -> None:  # fmt: skip
    """One step of Algorithm 1 written out by hand (the baseline)."""
    sigma, k_steps, s = cfg["sigma"], cfg["inference"]["steps"], cfg["inference"]["step_size"]
    z = torch.randn(len(x), cfg["latent_dim"], generator=rng)
    for _ in range(k_steps):  # Eq. (8): z <- z + s^2/2 grad log p(z|x) + s eps
        z.requires_grad_(True)
        log_post = flow().log_prob(z) - (x - gen(z)).pow(2).flatten(1).sum(1) / (2 * sigma**2)
        (grad,) = torch.autograd.grad(log_post.sum(), z)
        z = (z + 0.5 * s * s * grad + s * torch.randn(z.shape, generator=rng)).detach()
    opts["prior"].zero_grad()
    (-flow().log_prob(z).mean()).backward()  # Eq. (6)
    opts["prior"].step()
    opts["generator"].zero_grad()
    ((x - gen(z)).pow(2).flatten(1).sum(1) / (2 * sigma**2)).mean().backward()  # Eq. (7)
    opts["generator"].step()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/lfbm/digits.yaml"))
    p.add_argument("--steps", type=int, default=20, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/lfbm_throughput.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cfg = resolve_config("lfbm", args.config, [f"seed={args.seed}", "train.log_every=1000000"])
    mcfg = {k: v for k, v in cfg["model"].items() if k != "name"}
    train = symgen.data.load("digits", split="train", seed=cfg["data"]["split_seed"])
    info = DataInfo("digits", "image", tuple(train.event_shape), train.num_classes)
    bs = int(cfg["data"]["batch_size"])

    model = MODELS.get("lfbm").from_config(mcfg, info)
    ours, trained = copy.deepcopy(model), copy.deepcopy(model)
    hand_gen, hand_flow = copy.deepcopy(model.generator), copy.deepcopy(model.prior.flow)
    betas = tuple(mcfg["betas"])
    hand_opts = {
        "generator": torch.optim.Adam(hand_gen.parameters(), lr=mcfg["lr"]["generator"], betas=betas),
        "prior": torch.optim.Adam(hand_flow.parameters(), lr=mcfg["lr"]["prior"], betas=betas),
    }

    streams = {k: TensorStream(train.x, bs, args.seed) for k in ("hand", "ours")}
    rng_hand, rng_ours = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    ctx = bare_context(ours, rng_ours)
    tmp = tempfile.TemporaryDirectory()
    cfg["train"]["steps"] = 0
    stream = TensorStream(train.x, bs, args.seed)
    trainer = Trainer(trained, cfg, stream, RunDir(tmp.name), torch.device("cpu"),
                      progress=False)  # fmt: skip
    trainer.tcfg["ckpt_every"] = 0

    def run_hand() -> None:
        for _ in range(args.steps):
            hand_step(hand_gen, hand_flow, hand_opts, next(streams["hand"]), mcfg, rng_hand)

    def run_ours() -> None:
        ours.train()
        for _ in range(args.steps):
            ours.training_step(next(streams["ours"]), ctx)

    def run_trainer() -> None:
        trainer.tcfg["steps"] = trainer.step + args.steps
        trainer.save = lambda: None  # type: ignore[method-assign]  # time the loop, not checkpoint I/O
        trainer.fit()

    load_start = os.getloadavg()[0]
    for fn in (run_hand, run_ours, run_trainer):  # warm-up
        fn()
    tasks = {"hand loop": run_hand, "symgen training_step": run_ours, "symgen Trainer": run_trainer}
    rounds = [measure(tasks, 1, warmup=False) for _ in range(args.repeats)]  # interleaved, as measure()
    res = {k: (min(r[k][0] for r in rounds), min(r[k][1] for r in rounds)) for k in tasks}
    n = args.steps * bs
    base_wall, base_cpu = n / res["hand loop"][0], n / res["hand loop"][1]

    def per_round(k: str) -> str:
        ratios = sorted(r["hand loop"][1] / r[k][1] for r in rounds)
        return f"{statistics.median(ratios):.2f} [{ratios[0]:.2f}, {ratios[-1]:.2f}]"

    rows = [f"| {k} | {n / w:.0f} | {n / w / base_wall:.2f} | {n / c:.0f} | {n / c / base_cpu:.2f} | "
            f"{per_round(k)} |" for k, (w, c) in res.items()]  # fmt: skip
    cmd = "PYTHONPATH=src .venv/bin/python benchmarks/bench_lfbm_throughput.py " + " ".join(
        f"--{k}={v}" for k, v in (("steps", args.steps), ("repeats", args.repeats), ("threads", args.threads),
                                  ("seed", args.seed)))  # fmt: skip
    text = "\n".join([
        "# LFBM training throughput on digits (images/s)",
        "",
        "Algorithm 1 on `configs/lfbm/digits.yaml` (batch "
        f"{bs}, K = {mcfg['inference']['steps']} Langevin steps, latent {mcfg['latent_dim']}, "
        "5-step Glow prior): symgen vs a hand-written loop of the same algorithm on identical networks, "
        "interleaved in one process; "
        f"best of {args.repeats} blocks of {args.steps} steps.",
        "",
        "| loop | images/s (wall) | ratio | images/s (CPU time) | ratio | CPU ratio per round: median "
        "[range] |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"- command: `{cmd}`",
        f"- seed: {args.seed}; torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared)",
        f"- load average (1 min) at start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f}",
        f"- commit: `{git_head()}`",
        "",
    ])  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    tmp.cleanup()


if __name__ == "__main__":
    main()
