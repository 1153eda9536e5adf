"""DDGAN vs DDPM sampling speed at matched quality (dissertation Table 6.1 / Fig. 6.6), and the 25-Gaussians
scatter panels of Fig. 6.9 / Table 6.2's T ablation.

**Speed.** Loads the runs that ``symgen reproduce ddgan-digits`` trained (DDGAN T = 4, the T = 1 GAN and
DDPM, per seed), and in this one process times ``sample(n)`` (default 100, the paper's batch; seconds scaled
to 1000 samples) of DDGAN and of DDPM at each step count of its sweep, calls interleaved (``_bench.measure``,
best of ``--repeats``), one thread. Quality is each run's ``sampling_tradeoff`` evaluation (fd_clf,
recall_clf on the 360 test digits), averaged over seeds. DDPM's best-quality step count is the one with the
lowest mean fd_clf. Target: DDGAN T = 4 samples at least 100x faster than DDPM at that step count, with a
fd_clf no worse than 1.5x DDPM's there.

**Toy panels.** With ``--toy``, 2500 samples of each ``ddgan-toy`` run of seed 0 (T = 1, 2, 4, 8) over the
data, in one figure.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ddgan.py [--toy]`` after the reproduce runs
(writes benchmarks/results/ddgan-speed.md, ddgan-digits-tradeoff.png, ddgan-toy-scatter.png).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch

from _bench import ROOT, git_head, measure  # noqa: E402  (benchmarks/ is on sys.path)
from symgen.runs import load_run

RESULTS = ROOT / "benchmarks" / "results"
LABELS = {"ddgan": "DDGAN_T_4_", "gan": "GAN_T_1_", "ddpm": "DDPM"}


def _evals(run_dir: Path) -> dict[str, float]:
    """The last ``eval`` record of a run's ``metrics.jsonl``."""
    out: dict[str, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval":
            out.update({k: v for k, v in rec.items() if isinstance(v, int | float)})
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def speed(root: Path, seeds: list[int], repeats: int, n: int) -> None:
    torch.set_num_threads(1)
    quality: dict[str, dict[str, list[float]]] = {}
    times: dict[str, list[float]] = {}
    nfe: dict[str, int] = {}
    for seed in seeds:
        runs = {k: load_run(root / f"{v}-seed{seed}") for k, v in LABELS.items()}
        tasks, per_seed_quality = {}, {}
        for key in ("ddgan", "gan"):
            model, ev = runs[key].model, _evals(root / f"{LABELS[key]}-seed{seed}")
            label = "DDGAN (T=4)" if key == "ddgan" else "GAN (T=1)"
            tasks[label] = lambda m=model: m.sample(n, torch.Generator().manual_seed(0))
            nfe[label] = model.nfe
            per_seed_quality[label] = {"fd_clf": ev["fd_clf"], "recall_clf": ev["recall_clf"]}
        ddpm_model, ev = runs["ddpm"].model, _evals(root / f"DDPM-seed{seed}")
        for steps in ddpm_model.sweep_steps:
            label = f"DDPM ({steps} steps)"
            tasks[label] = lambda s=steps, m=ddpm_model: m.sample(
                n, torch.Generator().manual_seed(0), steps=s
            )
            nfe[label] = steps
            per_seed_quality[label] = {
                "fd_clf": ev[f"fd_clf_s{steps}"],
                "recall_clf": ev[f"recall_clf_s{steps}"],
            }
        for label, (wall, _cpu) in measure(tasks, repeats).items():
            times.setdefault(label, []).append(wall * 1000 / n)  # seconds per 1000 samples
        for label, q in per_seed_quality.items():
            for k, v in q.items():
                quality.setdefault(label, {}).setdefault(k, []).append(v)
        print(f"seed {seed}: " + ", ".join(f"{k} {min(v):.3f}s" for k, v in times.items()), flush=True)
    sec = {k: min(v) for k, v in times.items()}
    fd = {k: _mean_std(q["fd_clf"]) for k, q in quality.items()}
    rec = {k: _mean_std(q["recall_clf"]) for k, q in quality.items()}
    ddpm_labels = [k for k in fd if k.startswith("DDPM")]
    best = min(ddpm_labels, key=lambda k: fd[k][0])
    ratio = sec[best] / sec["DDGAN (T=4)"]
    qratio = fd["DDGAN (T=4)"][0] / fd[best][0]
    lines = [
        "# DDGAN vs DDPM: sampling speed at matched quality (embedded digits, CPU)",
        "",
        "Dissertation Table 6.1 / Fig. 6.6 in miniature. Runs: `symgen reproduce ddgan-digits` (seeds "
        f"{seeds}); timing: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ddgan.py`, one process, one "
        f"thread, `sample({n})` in one batch (seconds scaled to 1000 samples), best of {repeats} interleaved "
        "calls per seed, then the minimum over seeds. fd_clf / recall_clf: each run's `sampling_tradeoff` "
        "evaluation (360 test digits), mean ± std over seeds.",
        "",
        "| sampler | NFE | s / 1000 samples | fd_clf | recall_clf |",
        "|---|---|---|---|---|",
    ]
    for label in sorted(sec, key=lambda k: -nfe[k] if k.startswith("DDPM") else 10**6):
        lines.append(
            f"| {label} | {nfe[label]} | {sec[label]:.4g} | {fd[label][0]:.3g} ± {fd[label][1]:.2g} | "
            f"{rec[label][0]:.3f} ± {rec[label][1]:.2g} |"
        )
    ok_speed, ok_quality = ratio >= 100, qratio <= 1.5
    full = max(ddpm_labels, key=lambda k: nfe[k])
    lines += [
        "",
        f"DDPM's best-quality step count: **{best}** (lowest mean fd_clf).",
        f"- speed ratio {best} / DDGAN (T=4): **{ratio:.0f}x** (target >= 100x: "
        f"{'holds' if ok_speed else 'does not hold'})",
        f"- fd_clf ratio DDGAN (T=4) / {best}: **{qratio:.2f}** (target <= 1.5: "
        f"{'holds' if ok_quality else 'does not hold'})",
        f"- against {full} (all training steps, the paper's comparison): speed ratio "
        f"**{sec[full] / sec['DDGAN (T=4)']:.0f}x**, fd_clf ratio "
        f"**{fd['DDGAN (T=4)'][0] / fd[full][0]:.2f}**",
        "- paper (CIFAR-10, V100, 100 images): DDGAN 0.21 s vs DDPM 80.5 s (383x), FID 3.75 vs 3.21 (1.17x)",
        "",
        f"Plot: [ddgan-digits-tradeoff.png](ddgan-digits-tradeoff.png). Commit: `{git_head()}`; "
        f"machine: {platform.machine()}, torch {torch.__version__}.",
    ]
    (RESULTS / "ddgan-speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(sec, fd, nfe)


def _plot(sec: dict[str, float], fd: dict[str, tuple[float, float]], nfe: dict[str, int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ddpm = sorted((k for k in sec if k.startswith("DDPM")), key=lambda k: nfe[k])
    ax.errorbar([sec[k] for k in ddpm], [fd[k][0] for k in ddpm], [fd[k][1] for k in ddpm], fmt="o-",
                label="DDPM (strided)")  # fmt: skip
    for k in ddpm:
        ax.annotate(str(nfe[k]), (sec[k], fd[k][0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for k, marker in (("DDGAN (T=4)", "*"), ("GAN (T=1)", "s")):
        ax.errorbar([sec[k]], [fd[k][0]], [fd[k][1]], fmt=marker, markersize=10, label=k)
    ax.set(xscale="log", yscale="log", xlabel="seconds per 1000 samples (1 CPU thread)", ylabel="fd_clf")
    ax.legend(fontsize=8)
    fig.savefig(RESULTS / "ddgan-digits-tradeoff.png", dpi=120, bbox_inches="tight")


def toy_panels(root: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symgen.tasks.mode_coverage import mode_coverage

    steps = [1, 2, 4, 8]
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3.3))
    for ax, T in zip(axes, steps):
        run = load_run(root / f"DDGAN_T_{T}-seed{seed}")
        data = run.data.train
        x = run.model.sample(2500, torch.Generator().manual_seed(0))
        stats = mode_coverage(x, data.means, float(data.std))
        real = data.sample(2500, generator=torch.Generator().manual_seed(0))
        ax.scatter(real[:, 0], real[:, 1], s=1, c="0.75")
        ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:blue")
        (x0, x1), (y0, y1) = data.bounds
        ax.set(xlim=(x0, x1), ylim=(y0, y1), aspect="equal", xticks=[], yticks=[])
        ax.set_title(
            f"T = {T}: {int(stats['modes_covered'])} modes, {100 * stats['high_quality']:.0f}% HQ", fontsize=9
        )
    fig.savefig(RESULTS / "ddgan-toy-scatter.png", dpi=110, bbox_inches="tight")
    print("wrote", RESULTS / "ddgan-toy-scatter.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=str(ROOT / "runs" / "reproduce"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=100, help="batch size of the timed sample() calls (paper: 100)")
    p.add_argument("--toy", action="store_true", help="only draw the ddgan-toy scatter panels (seed 0)")
    args = p.parse_args()
    if args.toy:
        toy_panels(Path(args.runs) / "ddgan-toy", args.seeds[0])
    else:
        speed(Path(args.runs) / "ddgan-digits", args.seeds, args.repeats, args.n)


if __name__ == "__main__":
    main()
