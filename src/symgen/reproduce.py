"""``symgen reproduce EXPERIMENT``: train and evaluate a named set of configs over seeds, write tables.

An experiment is data, a YAML file ``configs/experiments/EXPERIMENT.yaml``::

    name: lfbm-digits
    description: LFBM Table 2 in miniature on the embedded digits
    seeds: [0, 1, 2]
    evals: [recon_mse, fd_clf, inpaint_mse]
    runs:
      - {label: ABP, model: abp, config: configs/lfbm/digits_abp.yaml}
      - {label: LFBM, model: lfbm, config: configs/lfbm/digits.yaml, set: {model.prior.depth: 4}}
      - {label: LFBM, column: "held-out 1", model: lfbm, config: ..., set: {data.holdout_class: 1}}

Every (run, seed) is trained into ``RUNS_ROOT/EXPERIMENT/<label>[-<column>]-seed<k>`` (a finished run
is reused, an interrupted one resumed), evaluated, and the results are aggregated into mean +- std over
seeds: rows are labels, columns are ``column`` values (if any) times metrics. The table is written to
``RESULTS/EXPERIMENT.md`` and ``.json`` with the command, seeds, commit and timings.
"""

from __future__ import annotations

import json
import math
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from symgen.config import ConfigError, load_yaml, resolve_config

__all__ = ["experiment_names", "load_experiment", "reproduce", "configs_root", "aggregate", "markdown_table"]


def configs_root() -> Path:
    """The ``configs/`` folder: ``./configs`` if present, else the one beside the installed source tree."""
    local = Path("configs")
    if (local / "experiments").is_dir():
        return local
    return Path(__file__).resolve().parents[2] / "configs"


def experiment_names() -> list[str]:
    folder = configs_root() / "experiments"
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_experiment(name: str) -> dict[str, Any]:
    """Read and validate ``configs/experiments/<name>.yaml`` (names resolve inside that folder only)."""
    path = configs_root() / "experiments" / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or ".." in name or not path.is_file():
        from symgen.registry import closest

        raise ConfigError(
            f"unknown experiment '{name}'{closest(name, experiment_names())}; "
            f"available: {', '.join(experiment_names()) or '(none)'}"
        )
    exp = load_yaml(path)
    for key in ("runs", "evals"):
        if key not in exp:
            raise ConfigError(f"experiment file {path} lacks the key '{key}'")
    for i, run in enumerate(exp["runs"]):
        unknown = set(run) - {"label", "column", "model", "config", "set", "evals"}
        if unknown or "label" not in run or "model" not in run:
            raise ConfigError(
                f"{path}: runs[{i}] needs label and model (allowed: label, column, model, config, "
                f"set, evals); got keys {sorted(run)}"
            )
    exp.setdefault("seeds", [0])
    exp.setdefault("name", name)
    return exp


def _overrides(mapping: dict[str, Any] | None) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in (mapping or {}).items()]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _finished(out: Path, steps: int) -> bool:
    from symgen.rundir import RunDir

    ckpt = RunDir(out, enabled=False).latest_checkpoint() if (out / "checkpoints").is_dir() else None
    return ckpt is not None and int(ckpt.stem.split("-")[1]) >= steps


def _check_same_config(out: Path, cfg: dict[str, Any]) -> None:
    """Refuse to reuse or resume a run directory trained with another config (an edited YAML, a new default):
    its numbers would be reported as this config's. ``device`` and ``data.root`` may differ."""
    from symgen.config import config_diff
    from symgen.rundir import RunDir
    from symgen.runs import stored_config

    if not (out / "config.yaml").is_file():
        return
    stored = stored_config(RunDir(out, enabled=False))  # with the legacy defaults of keys added since
    changed = [k for k in config_diff(stored, cfg) if k not in ("device", "data.root")]
    if changed:
        raise ValueError(
            f"{out} was trained with another config ({', '.join(changed)} differ from what the experiment "
            "resolves to now); move or delete that run directory to train it again"
        )


def run_one(
    run: dict[str, Any],
    seed: int,
    evals: list[str],
    out: Path,
    overrides: list[str],
    device: str | None,
    progress: bool,
) -> dict[str, Any]:
    """Train (or reuse) one (run, seed) and evaluate it; returns its results and timings."""
    from symgen.runs import evaluate_run, train

    config = run.get("config")
    if config is not None and not Path(config).is_file():
        config = configs_root().parent / config
    sets = _overrides(run.get("set")) + list(overrides) + [f"seed={seed}"]
    if device:
        sets.append(f"device={device}")
    cfg = resolve_config(run["model"], config, sets)
    _check_same_config(out, cfg)
    t0 = time.perf_counter()
    if not _finished(out, int(cfg["train"]["steps"])):
        resume = (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step-*.pt"))
        if not resume and out.is_dir():  # a run of ours that died before its first checkpoint
            shutil.rmtree(out)
        train(cfg, out, resume=resume, progress=progress)
    t_train = time.perf_counter() - t0
    results = evaluate_run(out, run.get("evals", evals), device=cfg["device"], seed=seed)
    return {
        "label": run["label"],
        "column": run.get("column"),
        "seed": seed,
        "run_dir": str(out),
        "results": results,
        "train_seconds": round(t_train, 1),
        "eval_seconds": round(time.perf_counter() - t0 - t_train, 1),
    }


def aggregate(records: list[dict[str, Any]]) -> dict[tuple[str, str | None, str], tuple[float, float, int]]:
    """Mean, sample std and count over seeds for every (label, column, metric)."""
    groups: dict[tuple[str, str | None, str], list[float]] = {}
    for rec in records:
        for metric, value in rec["results"].items():
            groups.setdefault((rec["label"], rec["column"], metric), []).append(float(value))
    return {
        k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"), len(v))
        for k, v in groups.items()
    }


def markdown_table(agg: dict[tuple[str, str | None, str], tuple[float, float, int]]) -> str:
    """Rows: labels (in first-seen order); columns: (column, metric) pairs; cells: mean +- std."""
    labels = list(dict.fromkeys(k[0] for k in agg))
    cols = list(dict.fromkeys((k[1], k[2]) for k in agg))
    head = ["model"] + [f"{c} {m}".strip() if c else m for c, m in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in labels:
        cells = [label]
        for c, m in cols:
            if (label, c, m) in agg:
                mean, std, n = agg[(label, c, m)]
                cells.append(f"{mean:.4g} ± {std:.2g}" if not math.isnan(std) else f"{mean:.4g}")
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def reproduce(
    name: str,
    runs_root: str | Path = "runs/reproduce",
    results_dir: str | Path = "benchmarks/results",
    seeds: list[int] | None = None,
    overrides: list[str] | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Run every (run, seed) of experiment ``name`` and write ``results_dir/name.{md,json}``, and the
    page ``results_dir/name-runs.md`` with every run's training curves
    (:func:`symgen.report.write_comparison`)."""
    from tqdm.auto import tqdm

    from symgen.report import write_comparison

    exp = load_experiment(name)
    seeds = list(seeds or exp["seeds"])
    overrides = list(overrides or [])
    jobs = [(run, s) for run in exp["runs"] for s in seeds]
    records = []
    t0 = time.perf_counter()
    for run, seed in tqdm(jobs, desc=f"reproduce {name}", disable=not progress):
        tag = _slug("-".join(filter(None, [run["label"], run.get("column")])) + f"-seed{seed}")
        records.append(
            run_one(run, seed, list(exp["evals"]), Path(runs_root) / name / tag, overrides, device, False)
        )
    agg = aggregate(records)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    command = "symgen reproduce " + " ".join(
        [name] + [f"--seeds {' '.join(map(str, seeds))}"] + [f"--set {o}" for o in overrides]
    )
    meta = {
        "experiment": name,
        "description": exp.get("description", ""),
        "command": command,
        "seeds": seeds,
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    table = markdown_table(agg)
    runs_page = write_comparison(
        [r["run_dir"] for r in records], results_dir / f"{name}-runs.md", title=f"{name}: every run"
    )
    md = results_dir / f"{name}.md"
    md.write_text(
        f"# {name}\n\n{exp.get('description', '')}\n\n{table}\n\nmean ± sample std over seeds {seeds}; "
        f"training curves and final metrics of every run: [{runs_page.name}]({runs_page.name}).\n\n"
        + "\n".join(f"- {k}: `{v}`" for k, v in meta.items() if k not in ("description",))
        + "\n"
    )
    (results_dir / f"{name}.json").write_text(
        json.dumps(
            {
                **meta,
                "runs": records,
                "table": [
                    {"label": k[0], "column": k[1], "metric": k[2], "mean": v[0], "std": v[1], "n": v[2]}
                    for k, v in agg.items()
                ],
            },
            indent=2,
            default=str,
        )
    )
    return md
