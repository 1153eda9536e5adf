"""The ``symgen`` command line: ``train``, ``sample``, ``eval``, ``reproduce``, ``list``.

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
    t.add_argument("--out", help="run directory (default: runs/MODEL-DATA-TIMESTAMP)")
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
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

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
    if args.resume:
        if not args.out:
            raise SystemExit("error: --resume needs --out RUN_DIR")
        cfg = resume_config(args.out, overrides)
        if cfg["model"]["name"] != args.model:
            raise SystemExit(f"error: {args.out} holds a '{cfg['model']['name']}' run, not '{args.model}'")
    else:
        cfg = resolve_config(args.model, args.config, overrides)
    if args.dry_run:
        sys.stdout.write(_yaml(cfg))
        return 0
    out = Path(
        args.out
        or f"runs/{args.model}-{Path(str(cfg['data']['name'])).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if not args.resume and (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step-*.pt")):
        raise SystemExit(
            f"error: {out} already holds a run; pass --resume to continue it or choose another --out"
        )
    trainer = train(cfg, out, resume=args.resume, progress=not args.quiet)
    if trainer.run.enabled:
        print(f"run directory: {out}  (report: {out / 'report.md'})")
    return 0


def _yaml(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False)


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from symgen.runs import sample_run

    out = Path(args.out) if args.out else Path(args.run_dir) / "images" / "samples-cli.png"
    if out.suffix == ".pt":
        x = sample_run(args.run_dir, args.n, None, seed=args.seed, device=args.device)
        torch.save(x, out)
    elif out.suffix == ".png":
        sample_run(args.run_dir, args.n, out, seed=args.seed, device=args.device)
    else:
        raise SystemExit(f"error: --out must end in .png or .pt, got {out}")
    print(f"wrote {args.n} samples to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from symgen.runs import evaluate_run

    results = evaluate_run(args.run_dir, args.metrics, device=args.device, seed=args.seed)
    print(json.dumps(results, indent=2))
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
    "reproduce": cmd_reproduce,
    "list": cmd_list,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``symgen`` command."""
    args = build_parser().parse_args(argv)
    _load_plugins()
    from symgen.checkpoint import CheckpointError
    from symgen.config import ConfigError
    from symgen.trainer import DivergenceError

    try:
        return COMMANDS[args.command](args)
    except DivergenceError as exc:
        print(
            f"error: training diverged: {exc}; the last good checkpoint is kept (resume with --resume "
            "after lowering the learning rate or enabling train.grad_clip)",
            file=sys.stderr,
        )
        return 3
    except (ConfigError, CheckpointError, FileNotFoundError, KeyError, ValueError) as exc:
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
    return "\n".join(parts)


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown_help())
        raise SystemExit(0)
    raise SystemExit(main())
