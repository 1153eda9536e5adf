"""The ``symgen`` command line: ``train``, ``sample``, ``eval``, ``report``, ``reproduce``, ``list``.

Run ``symgen COMMAND --help`` for the options; ``docs/cli.md`` is generated from these parsers
(``python -m symgen.cli --markdown``) and a test checks that it is up to date.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["build_parser", "main"]


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=100, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(
        prog="symgen",
        formatter_class=_formatter,
        description="Symbiotic deep generative models: train, sample, evaluate, reproduce.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        formatter_class=_formatter,
        help="train a model (fresh run or --resume)",
        description="Train MODEL and write a run directory.",
    )
    t.add_argument("model", metavar="MODEL", help="registered model name (see `symgen list`)")
    t.add_argument("--config", help="YAML config file (keys override the model's defaults)")
    t.add_argument("--data", help="dataset name or path (shortcut for --set data.name=...)")
    t.add_argument(
        "--out", help="run directory, new or empty unless --resume (default: a new runs/MODEL-DATA-TIMESTAMP)"
    )
    t.add_argument("--device", help="cpu, cuda or cuda:N (shortcut for --set device=...)")
    t.add_argument("--seed", type=int, help="random seed (shortcut for --set seed=N)")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.steps=400 (repeatable)",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its latest checkpoint; --config/--set may change learning "
        "rates, step counts and intervals (see docs/cli.md: Resuming)",
    )
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write scalars and sample grids to RUN/tensorboard/ (shortcut for --set "
        "train.tensorboard=true; needs pip install 'symgen[tensorboard]'); watch with "
        "`tensorboard --logdir runs`",
    )

    s = sub.add_parser(
        "sample",
        formatter_class=_formatter,
        help="draw samples from a trained run",
        description="Write samples of a trained run.",
    )
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument(
        "--out",
        help="output file: .png (grid / scatter) or .pt (tensor); default RUN_DIR/images/samples-cli.png",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cpu")

    e = sub.add_parser(
        "eval",
        formatter_class=_formatter,
        help="evaluate a trained run",
        description="Append evaluation results to RUN_DIR/metrics.jsonl.",
    )
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument(
        "--metrics", nargs="+", required=True, metavar="NAME", help="evaluation names (see `symgen list`)"
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu")

    rep = sub.add_parser(
        "report",
        formatter_class=_formatter,
        help="rebuild a run's report, or compare runs on one page",
        description="With one RUN: redraw its training curves (RUN/plots/curves-*.png) and rewrite "
        "RUN/report.md (also while it trains). With several: write one comparison page, their curves "
        "overlaid and their final metrics in one table.",
    )
    rep.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    rep.add_argument(
        "--out",
        metavar="PAGE.md",
        help="the comparison page (also for one RUN); its figures go beside it, to PAGE-curves/; default: "
        "comparison.md in the runs' common parent folder",
    )
    rep.add_argument("--labels", nargs="+", metavar="LABEL", help="a name per run (default: folder names)")
    rep.add_argument("--title", help="heading of the report or page")

    r = sub.add_parser(
        "reproduce",
        formatter_class=_formatter,
        help="run a named experiment and write a results table",
        description="Train and evaluate every (config, seed) of EXPERIMENT; "
        "write benchmarks/results/EXPERIMENT.{md,json}.",
    )
    r.add_argument(
        "experiment", metavar="EXPERIMENT", help="name of a file configs/experiments/EXPERIMENT.yaml"
    )
    r.add_argument("--runs-root", default="runs/reproduce", help="where the run directories go")
    r.add_argument("--results", default="benchmarks/results", help="where the tables go")
    r.add_argument("--seeds", type=int, nargs="+", help="override the experiment's seeds")
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key in every run (e.g. train.steps=50 for a smoke run)",
    )
    r.add_argument("--device", default=None)
    r.add_argument("--quiet", action="store_true")

    sub.add_parser(
        "list",
        formatter_class=_formatter,
        help="list registered models, datasets, flows, evaluations and experiments",
    )
    return p


def _load_plugins() -> None:
    """Import the modules that register models, datasets, flows and evaluations."""
    import symgen  # noqa: F401  (its __init__ imports every registering module)


def cmd_train(args: argparse.Namespace) -> int:
    from symgen.config import resolve_config
    from symgen.runs import resume_config, train

    overrides = list(args.overrides)
    for flag, key in ((args.data, "data.name"), (args.device, "device"), (args.seed, "seed")):
        if flag is not None:
            overrides.insert(0, f"{key}={flag}")
    if args.tensorboard:
        overrides.insert(0, "train.tensorboard=true")
    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out RUN_DIR")
        cfg = resume_config(args.out, overrides, args.config)
        if cfg["model"]["name"] != args.model:
            raise ValueError(f"{args.out} holds a '{cfg['model']['name']}' run, not '{args.model}'")
    else:
        cfg = resolve_config(args.model, args.config, overrides)
    if args.dry_run:
        sys.stdout.write(_yaml(cfg))
        return 0
    out = Path(args.out) if args.out else _new_run_dir(args.model, cfg)
    trainer = train(cfg, out, resume=args.resume, progress=not args.quiet)
    if trainer.run.enabled:
        print(f"run directory: {out}  (report: {out / 'report.md'})")
    return 0


def _new_run_dir(model: str, cfg: dict) -> Path:
    """``runs/MODEL-DATA-TIMESTAMP[-N]``, created atomically so that runs started in the same second
    (a sweep) never share a directory."""
    stem = f"runs/{model}-{Path(str(cfg['data']['name'])).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path("runs").mkdir(exist_ok=True)
    for n in range(1, 10_000):
        path = Path(stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not create a new run directory {stem}-N")


def _yaml(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False)


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from symgen.runs import sample_run

    out = Path(args.out) if args.out else Path(args.run_dir) / "images" / "samples-cli.png"
    if out.suffix not in (".pt", ".png"):
        raise ValueError(f"--out must end in .png or .pt, got {out}")
    if args.out and not out.parent.is_dir():
        raise ValueError(f"--out {out}: the folder {out.parent} does not exist")
    if out.suffix == ".pt":
        x = sample_run(args.run_dir, args.n, None, seed=args.seed, device=args.device)
        torch.save(x, out)
    else:
        sample_run(args.run_dir, args.n, out, seed=args.seed, device=args.device)
    print(f"wrote {args.n} samples to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from symgen.runs import evaluate_run

    results = evaluate_run(args.run_dir, args.metrics, device=args.device, seed=args.seed)
    print(json.dumps(results, indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from symgen.report import write_comparison, write_run_report

    if len(args.runs) == 1 and args.out is None:
        if args.labels:
            raise ValueError("--labels names the runs of a comparison page (several RUNs or --out)")
        path = write_run_report(args.runs[0], title=args.title)
    else:
        path = write_comparison(args.runs, args.out, labels=args.labels, title=args.title)
    print(f"wrote {path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from symgen.reproduce import reproduce

    md = reproduce(
        args.experiment,
        runs_root=args.runs_root,
        results_dir=args.results,
        seeds=args.seeds,
        overrides=args.overrides,
        device=args.device,
        progress=not args.quiet,
    )
    print(md.read_text())
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from symgen.registry import DATASETS, EVALS, FLOWS, METRICS, MODELS
    from symgen.reproduce import experiment_names

    for title, reg in (
        ("models", MODELS),
        ("datasets", DATASETS),
        ("flows", FLOWS),
        ("evaluations", EVALS),
        ("metric functions", METRICS),
    ):
        print(f"{title}:")
        for name in reg.names():
            print(f"  {name:<22} {reg.help(name)}")
    print("experiments (symgen reproduce):")
    for name in experiment_names():
        print(f"  {name}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "report": cmd_report,
    "reproduce": cmd_reproduce,
    "list": cmd_list,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``symgen`` command."""
    args = build_parser().parse_args(argv)
    _load_plugins()
    from symgen.checkpoint import CheckpointError
    from symgen.config import ConfigError
    from symgen.runlock import RunLockedError
    from symgen.tensorboard import TensorBoardMissing
    from symgen.trainer import DivergenceError

    try:
        return COMMANDS[args.command](args)
    except DivergenceError as exc:
        print(
            f"error: training diverged: {exc}; the last good checkpoint is kept (continue with --resume "
            "--set model.lr=... to lower the learning rate, or --set train.grad_clip=...)",
            file=sys.stderr,
        )
        return 3
    except RunLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except (ConfigError, CheckpointError, FileNotFoundError, KeyError, ValueError, TensorBoardMissing) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130


def markdown_help() -> str:
    """``docs/cli.md``: the ``--help`` text of every subcommand."""
    parser = build_parser()
    parts = [
        "# symgen command line",
        "",
        "Generated by `python -m symgen.cli --markdown`; a test checks it matches `--help`.",
        "",
    ]
    parts += ["```text", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        parts += [f"## symgen {name}", "", "```text", sp.format_help().rstrip(), "```", ""]
    parts += [RUN_DIRECTORIES_DOC, WATCHING_RUNS_DOC]
    return "\n".join(parts)


RUN_DIRECTORIES_DOC = """## Run directories: one writer, fresh or resumed

- **One writer at a time.** `symgen train` and `symgen eval` hold an exclusive lock on the run directory
  (`RUN/.lock`, an OS file lock released however the process ends, `kill -9` included). A second writer
  stops at once with exit code 4, naming the process that holds the run. A lock file left by a process that
  died is reported (a warning) and taken over. Without `--out`, every run gets a new directory
  `runs/MODEL-DATA-TIMESTAMP`, with `-2`, `-3`, ... appended when runs start in the same second.
- **Fresh runs need a new or empty directory.** `--out` naming a directory that holds anything is refused
  (pass `--resume` to continue the run there); nothing in it is overwritten.
- **Resuming** (`--resume --out RUN`) continues from the latest checkpoint with the stored config, then
  the keys of `--config FILE`, then `--set` (and `--seed`, `--device`, `--data`). May change, and are
  applied: every `train.*` key except `train.ema_decay` and `train.ema_modules` (steps, stages,
  log/checkpoint/sample/evaluation intervals, evaluation names, `grad_clip`, `keep_checkpoints`,
  `precision`), learning rates and their schedules (model keys named `lr` or `lr_*`, e.g.
  `--set model.lr=3e-4`: the restored schedule keeps its progress, scaled to the new base rate),
  `device` and `data.root`. Everything else (architecture, `seed`, data, batch size, EMA) is fixed by the
  checkpoint: changing it is refused with the list of the differing config keys. `config.yaml`, the
  checkpoint and the `resume` record in `metrics.jsonl` (with the changed keys) describe what actually ran.
- **Crashes.** Resuming cuts `metrics.jsonl` back to the checkpoint's step (a torn last line is dropped), so
  every step appears once; temporary files of an interrupted checkpoint write are removed. A checkpoint
  becomes the latest only once the next step's loss is finite, so a diverging run (exit code 3) keeps the
  last checkpoint whose parameters and loss were finite; resume it with a lower learning rate.
- **Data-parallel runs** save every rank's batch stream and random state; resume them with the same number
  of processes.
- Exit codes: 0 done, 2 bad input (a one-line message), 3 diverged, 4 run directory in use, 130 interrupted
  (checkpoint saved).
"""


WATCHING_RUNS_DOC = """## Watching and comparing runs: training curves, `symgen report`, TensorBoard

- **Training curves.** Every `report.md` (written when training ends and after each `symgen eval`) shows
  `RUN/plots/curves-<group>.png`: the scalars of `metrics.jsonl` against the step, one figure per group,
  smoothed (a debiased moving average) with the raw points faint behind. Groups: `losses`, `gradients`
  (gradient norms), `sampler` (acceptance rates, step sizes, ESS, R-hat), `eval` (evaluation metrics over
  training), `learning_rate`, `other`, `throughput`, and one per prefix of keys logged as `prefix/name`
  (e.g. one optimizer's). A model's scalars appear where it logs them.
- **`symgen report RUN`** redraws the curves and rewrites `report.md` at any time, also while the run
  trains: it takes no lock and writes nothing else.
- **`symgen report RUN_A RUN_B ...`** writes one comparison page (`--out PAGE.md`, default `comparison.md`
  in the runs' common parent folder): the runs' curves overlaid, a colour per run (figures in
  `PAGE-curves/`), and one table of their final metrics (each evaluation metric at its latest evaluation,
  the last training losses) linking each run's report. `symgen reproduce EXPERIMENT` writes such a page,
  `RESULTS/EXPERIMENT-runs.md`, beside its table.
- **TensorBoard (opt-in).** `symgen train ... --tensorboard`, `--set train.tensorboard=true` or
  `train: {tensorboard: true}` in a config file also writes the numbers of every `train` and `eval` record
  as scalars `train/<key>`, `eval/<key>` at their step, and each sample grid as the image `samples`, to
  `RUN/tensorboard/`; watch with `tensorboard --logdir runs`. It needs `pip install 'symgen[tensorboard]'`
  (part of `[dev]`); without it, training stops before loading any data, saying so (exit code 2). Only
  rank 0 of a data-parallel job writes. A resumed run hides the events logged after its checkpoint's step
  (they are logged again, as in `metrics.jsonl`). `symgen eval` adds its results when TensorBoard is
  installed.
"""


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown_help())
        raise SystemExit(0)
    raise SystemExit(main())
