"""CoopFlow training throughput vs a minimal hand-written loop, and Langevin-revision memory against T.

**Throughput.** Three ways to run the same training step -- Algorithm 1 of the CoopFlow paper: draw
``z ~ N(0, I)``, propose ``x_hat = g_alpha(z)`` with the normalizing flow, revise it by ``T`` noise-free
Langevin steps toward the EBM ``exp f_theta`` (with the official drift clip and state clamp when the
config sets them), one Adam step of the flow on ``-mean log q_alpha(x_tilde)`` (Eq. (6)), one Adam step of
the EBM on ``mean f(x_tilde) - mean f(x)`` (Eq. (2)) -- on identical copies of the same networks and the
same batches:

* ``hand loop``            -- about twenty lines of plain torch (the baseline);
* ``symgen training_step`` -- :meth:`symgen.models.coopflow.CoopFlow.training_step` with a bare
  optimizer context;
* ``symgen Trainer``       -- the full :class:`symgen.trainer.Trainer` (finite checks, logging, gradient
  norms, and the config's ``train.grad_clip``, which the other two do not apply).

Calls interleave between the three; each entry is the best of ``--repeats`` blocks of ``--steps`` steps in
wall-clock and process CPU time, and the per-round CPU-time ratios (median and range over rounds) cancel
load that drifts between rounds on a shared machine. Target: ratio >= 0.9.

**Memory.** Peak resident memory of one Langevin revision ``LangevinFlow.run(x_hat)`` of the training
kernel with ``T`` steps, with and without ``differentiable=True``, each in a fresh subprocess: the
process's peak RSS (``VmHWM``) is reset through ``/proc/self/clear_refs`` right before the revision and the
revision's peak is ``VmHWM`` after it minus ``VmRSS`` before it. RSS is what the operating system must
provide (the autograd graph, the energy's activations, and whatever the allocator keeps or fragments --
the kind of growth ``samplers/base.py``'s ``_Recorder`` was written against), which a count of live tensor
bytes would miss; a fresh process keeps the benchmark's own allocations out of it. Where
``clear_refs`` cannot be written, ``ru_maxrss`` after the revision minus ``VmRSS`` before it is used.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_coopflow.py`` (writes
benchmarks/results/coopflow_throughput.md).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _bench import bare_context, git_head, measure  # noqa: E402  (benchmarks/ is on sys.path)
from symgen.batches import make_stream
from symgen.config import resolve_config
from symgen.flows import dequantize
from symgen.models.coopflow import CoopFlow
from symgen.rundir import RunDir
from symgen.runs import build_model, load_data
from symgen.trainer import Trainer

__all__ = ["hand_step", "revision_peak_mb", "main"]

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("configs/coopflow/digits.yaml", "configs/coopflow/spiral.yaml")


def hand_step(flow: torch.nn.Module, energy: torch.nn.Module, opts: dict, x: torch.Tensor, lang: dict,
              image: bool, rng: torch.Generator) -> None:  # fmt: skip
    """One step of Algorithm 1 written out by hand (the baseline)."""
    s, clip, clamp = lang["step_size"], lang["drift_clip"], lang["clamp"]
    z = torch.randn(x.shape, generator=rng)  # line 4
    with torch.no_grad():
        x_hat, _ = flow().forward(z)  # line 5
    if image:
        x_hat = x_hat.nan_to_num(0.0).clamp(-1, 1)
    x_t = x_hat
    for _ in range(lang["steps"]):  # line 6, Eq. (3) without noise: x + s^2/2 grad f
        x_t.requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x_t).sum(), x_t)
        drift = 0.5 * s * s * grad
        if clip:
            drift = drift.clamp(-clip, clip)
        x_t = x_t.detach() + drift
        if clamp:
            x_t = x_t.clamp(*clamp)
    opts["flow"].zero_grad()
    fit = dequantize(x_t, lang["n_bits"]) if image and lang["dequantize"] else x_t  # as the data (official)
    (-flow().log_prob(fit).mean()).backward()  # line 7, Eq. (6)
    opts["flow"].step()
    opts["ebm"].zero_grad()
    (energy(x_t).mean() - energy(x).mean()).backward()  # line 8, Eq. (2)
    opts["ebm"].step()


def _setup(config: str, seed: int) -> tuple[dict, Any, CoopFlow]:
    cfg = resolve_config("coopflow", config, [f"seed={seed}", "train.log_every=1000000"])
    torch.manual_seed(seed)
    splits = load_data(cfg)
    model = build_model(cfg, splits.info, torch.device("cpu"))
    stream = make_stream(splits.train, int(cfg["data"]["batch_size"]), seed)
    model.initialize(next(stream))  # ActNorm / standardisation, before the copies
    return cfg, splits, model  # type: ignore[return-value]


def _lang_options(model: CoopFlow) -> dict[str, Any]:
    o = model.langevin.kernel.options
    return {"steps": model.langevin.steps, "step_size": float(o["step_size"]), "drift_clip": o["drift_clip"],
            "clamp": o["clamp"], "n_bits": model.n_bits, "dequantize": model.dequantize_revised}  # fmt: skip


def throughput(config: str, steps: int, repeats: int, seed: int, block_seconds: float) -> dict[str, Any]:
    """Interleaved rounds of the three loops on ``config``; best and per-round ratios."""
    cfg, splits, model = _setup(config, seed)
    bs = int(cfg["data"]["batch_size"])
    image = model.kind == "image"
    lang = _lang_options(model)
    ours, trained = copy.deepcopy(model), copy.deepcopy(model)
    hand_flow, hand_energy = copy.deepcopy(model.flow), copy.deepcopy(model.energy)
    hand_opts = {
        "flow": torch.optim.Adam(hand_flow.parameters(), lr=model.lr["flow"], betas=model.betas["flow"],
                                 weight_decay=model.flow_weight_decay),
        "ebm": torch.optim.Adam(hand_energy.parameters(), lr=model.lr["ebm"], betas=model.betas["ebm"]),
    }  # fmt: skip
    streams = {k: make_stream(splits.train, bs, seed) for k in ("hand", "ours")}
    rng_hand = torch.Generator().manual_seed(1)
    ctx = bare_context(ours, torch.Generator().manual_seed(1))
    tmp = tempfile.TemporaryDirectory()
    cfg["train"]["steps"] = 0
    stream = make_stream(splits.train, bs, seed)
    trainer = Trainer(trained, cfg, stream, RunDir(tmp.name), torch.device("cpu"), progress=False)
    trainer.tcfg["ckpt_every"] = 0
    trainer.save = lambda: None  # type: ignore[method-assign]  # time the loop, not checkpoint I/O

    def run_hand() -> None:
        for _ in range(steps):
            hand_step(hand_flow, hand_energy, hand_opts, next(streams["hand"]), lang, image, rng_hand)

    def run_ours() -> None:
        ours.train()
        for _ in range(steps):
            ours.training_step(next(streams["ours"]), ctx)

    def run_trainer() -> None:
        trainer.tcfg["steps"] = trainer.step + steps
        trainer.fit()

    for fn in (run_hand, run_ours, run_trainer):  # warm-up
        fn()
    c0 = time.process_time()
    run_hand()
    per_step = (time.process_time() - c0) / steps
    steps = max(steps, round(block_seconds / max(per_step, 1e-6)))  # blocks of about block_seconds CPU
    tasks = {"hand loop": run_hand, "symgen training_step": run_ours, "symgen Trainer": run_trainer}
    rounds = [measure(tasks, 1, warmup=False) for _ in range(repeats)]
    tmp.cleanup()
    best = {k: (min(r[k][0] for r in rounds), min(r[k][1] for r in rounds)) for k in tasks}
    per_round = {k: sorted(r["hand loop"][1] / r[k][1] for r in rounds) for k in tasks}
    return {"cfg": cfg, "lang": lang, "n": steps * bs, "steps": steps, "best": best, "per_round": per_round,
            "grad_clip": cfg["train"].get("grad_clip")}  # fmt: skip


# ---------------------------------------------------------------------- memory
def _status_kb(key: str) -> int:
    match = re.search(key + r":\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def revision_peak_mb(config: str, steps: int, differentiable: bool, seed: int) -> dict[str, Any]:
    """Peak RSS above the start of one revision of ``steps`` Langevin steps (run in a fresh process)."""
    cfg, splits, model = _setup(config, seed)
    bs = int(cfg["data"]["batch_size"])
    _, x_hat = model.propose(bs)
    model.langevin.run(x_hat, steps=1)  # first-call allocations (thread pools, kernels) out of the peak
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        method = "VmHWM (reset by clear_refs) - VmRSS"
    except OSError:
        method = "ru_maxrss - VmRSS"
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out = model.langevin.run(x_hat, steps=steps, differentiable=differentiable)
    seconds = time.perf_counter() - t0
    if method.startswith("VmHWM"):
        peak = _status_kb("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    del out
    return {"mb": (peak - before) / 1024, "base_mb": before / 1024, "method": method, "seconds": seconds}


def _memory_in_subprocess(config: str, steps: int, differentiable: bool, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--memory-child", config, str(steps), str(int(differentiable)),
           f"--seed={seed}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- report
def _ratio_cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{values[0]:.2f}, {values[-1]:.2f}]"


def _throughput_table(name: str, res: dict[str, Any], repeats: int) -> list[str]:
    n, best, lang = res["n"], res["best"], res["lang"]
    base_wall, base_cpu = n / best["hand loop"][0], n / best["hand loop"][1]
    rows = [f"| {k} | {n / w:.0f} | {n / w / base_wall:.2f} | {n / c:.0f} | {n / c / base_cpu:.2f} | "
            f"{_ratio_cell(res['per_round'][k])} |" for k, (w, c) in best.items()]  # fmt: skip
    clip = f"drift clip {lang['drift_clip']}, clamp {list(lang['clamp'])}" if lang["clamp"] else "no clips"
    return [
        f"### `{name}` (batch {res['cfg']['data']['batch_size']}, T = {lang['steps']} noise-free steps of "
        f"{lang['step_size']}, {clip}; {res['cfg']['model']['flow']} flow)",
        "",
        f"Best of {repeats} interleaved blocks of {res['steps']} steps; samples/s; the Trainer also clips "
        f"gradients (`train.grad_clip: {res['grad_clip']}`).",
        "",
        "| loop | samples/s (wall) | ratio | samples/s (CPU time) | ratio | CPU ratio per round: median "
        "[range] |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--steps", type=int, default=10, help="training steps per timed block (at least)")
    p.add_argument("--block-seconds", type=float, default=2.0, help="more steps per block up to this CPU")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-steps", type=int, nargs=2, default=[10, 200], metavar=("T_SHORT", "T_LONG"))
    p.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per memory entry")
    p.add_argument("--memory-child", nargs=3, metavar=("CONFIG", "T", "DIFF"), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/coopflow_throughput.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        config, t, diff = args.memory_child
        print(json.dumps(revision_peak_mb(config, int(t), bool(int(diff)), args.seed)))
        return

    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    sections: list[str] = []
    for config in args.configs:
        res = throughput(config, args.steps, args.repeats, args.seed, args.block_seconds)
        sections += _throughput_table(Path(config).name, res, args.repeats)
        print("\n".join(sections[-8:]), flush=True)

    mem_rows, method = [], ""
    t_short, t_long = args.memory_steps
    for config in args.configs:
        for diff in (False, True):
            got = {t: [_memory_in_subprocess(config, t, diff, args.seed) for _ in range(args.memory_repeats)]
                   for t in (t_short, t_long)}  # fmt: skip
            method = got[t_short][0]["method"]
            mb = {t: sorted(r["mb"] for r in rs) for t, rs in got.items()}

            def cell(v: list[float]) -> str:
                return f"{v[0]:.1f}" if v[0] == v[-1] else f"{v[0]:.1f}-{v[-1]:.1f}"

            short, long = statistics.median(mb[t_short]), statistics.median(mb[t_long])
            ratio = long / max(short, 1e-9)
            per_step = (long - short) * 1024 / (t_long - t_short)
            sec = statistics.median(r["seconds"] for r in got[t_long])
            base = got[t_long][0]["base_mb"]
            mem_rows.append(f"| `{Path(config).name}` | {diff} | {cell(mb[t_short])} | {cell(mb[t_long])} | "
                            f"{ratio:.2f} | {per_step:.0f} | {base:.0f} | {sec:.2f} |")  # fmt: skip
            print(mem_rows[-1], flush=True)

    cmd = "OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_coopflow.py " + " ".join(
        [f"--configs {' '.join(args.configs)}", f"--steps={args.steps}",
         f"--block-seconds={args.block_seconds}", f"--repeats={args.repeats}",
         f"--threads={args.threads}", f"--seed={args.seed}",
         f"--memory-steps {t_short} {t_long}", f"--memory-repeats={args.memory_repeats}"])  # fmt: skip
    text = "\n".join([
        "# CoopFlow: training throughput and Langevin-revision memory",
        "",
        "## Throughput: symgen vs a hand-written loop of Algorithm 1",
        "",
        "The same step three ways on identical copies of the networks and the same batches, interleaved in "
        "one process (`benchmarks/bench_coopflow.py`, module docstring). Ratio: samples/s over the hand "
        "loop's; the per-round CPU ratio cancels load that drifts between rounds. Target >= 0.9.",
        "",
        *sections,
        "## Memory of one Langevin revision against T",
        "",
        f"Peak resident memory above the revision's start ({method}, kB -> MiB) of "
        f"`LangevinFlow.run(x_hat, steps=T)` with the training kernel on one batch of flow proposals, each "
        f"in a fresh process ({args.memory_repeats} processes per entry: min-max; ratio and growth per step "
        "from the medians). "
        "`differentiable=True` keeps the autograd graph of the whole chain (the unrolled chain of "
        "reconstruction and of the generator loss).",
        "",
        f"| config | differentiable | T = {t_short} (MiB) | T = {t_long} (MiB) | ratio | KiB per extra "
        f"step | RSS before (MiB) | seconds (T = {t_long}) |",
        "|---|---|---|---|---|---|---|---|",
        *mem_rows,
        "",
        f"- command: `{cmd}`",
        f"- seed: {args.seed}; torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"- load average (1 min) at start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f}; "
        f"{time.perf_counter() - t_start:.0f} s in all",
        f"- commit: `{git_head()}`",
        "",
    ])  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
