"""Reports of runs: a run's ``report.md`` with its training curves, and comparison pages of several runs.

``symgen report RUN`` rebuilds one run's report (also while it trains: nothing here locks or changes the
run besides ``report.md`` and ``plots/curves-*.png``); ``symgen report A B ...`` writes one page with the
runs' curves overlaid (:mod:`symgen.curves`) and their final metrics in one table. ``symgen reproduce``
writes such a page beside each experiment's table.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from symgen.curves import CURVE_PREFIX, curve_group, plot_curves, scalar_value
from symgen.rundir import RunDir, RunDirError, read_jsonl

__all__ = ["write_run_report", "write_comparison", "run_title", "final_metrics", "default_comparison_path"]

_META_KEYS = ("kind", "step", "time")


def run_title(cfg: dict[str, Any]) -> str:
    """``"<model> on <data>"``, the title of a run's report."""
    return f"{cfg['model']['name']} on {cfg['data']['name']}"


def _records(run_dir: Path) -> list[dict[str, Any]]:
    with warnings.catch_warnings():  # a run still training may be caught in mid-write
        warnings.simplefilter("ignore")
        return read_jsonl(run_dir / "metrics.jsonl")


def _last_train_scalars(records: list[dict[str, Any]]) -> dict[str, Any]:
    for rec in reversed(records):
        if rec.get("kind", "train") == "train":
            return {k: v for k, v in rec.items() if k not in _META_KEYS}
    return {}


def write_run_report(
    run: RunDir | str | os.PathLike[str], title: str | None = None, summary: dict[str, Any] | None = None
) -> Path | None:
    """Draw the run's training curves into ``plots/curves-<group>.png`` and write its ``report.md``.

    Arguments:
        run: the run directory (a :class:`RunDir`, or its path; it must hold a ``config.yaml``).
        title: the report's title (default :func:`run_title` of the run's config).
        summary: scalars for the summary table (default: the last ``train`` record's).

    Returns the report's path, or ``None`` on a non-main rank (``run.enabled`` false).
    """
    run = run if isinstance(run, RunDir) else RunDir(run, enabled=True)
    if not run.enabled:
        return None
    if title is None:
        title = run_title(run.load_config())
    records = _records(run.path)
    plot_curves({run.path.name: records}, run.path / "plots")
    if summary is None:
        summary = _last_train_scalars(records)
    return run.write_report(title, summary)


def final_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's final numbers: ``step`` (the last step logged), every evaluation metric at its latest
    evaluation, and the last value of each training loss (``train <name>``)."""
    out: dict[str, Any] = {}
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    if steps:
        out["step"] = max(steps)
    for rec in records:
        if rec.get("kind") == "eval":
            out.update({k: v for k, v in rec.items() if k not in _META_KEYS and scalar_value(v) is not None})
    for key, value in _last_train_scalars(records).items():
        if curve_group(key) == "losses" and scalar_value(value) is not None:
            out[f"train {key}"] = value
    return out


def _labels(run_dirs: Sequence[Path]) -> list[str]:
    """The runs' folder names, or their paths below the common parent when names repeat."""
    names = [p.name for p in run_dirs]
    if len(set(names)) == len(names):
        return names
    common = Path(os.path.commonpath([str(p.resolve()) for p in run_dirs]))
    return [str(p.resolve().relative_to(common)) or p.name for p in run_dirs]


def default_comparison_path(run_dirs: Sequence[str | os.PathLike[str]]) -> Path:
    """``comparison.md`` in the runs' common parent folder (the current folder if that is ``/``)."""
    parents = [str(Path(p).resolve().parent) for p in run_dirs]
    common = Path(os.path.commonpath(parents))
    return (common if common.parent != common else Path.cwd()) / "comparison.md"


def _fmt(value: Any) -> str:
    number = scalar_value(value)
    if number is None:
        return "" if value is None else str(value)
    return str(value) if isinstance(value, int) else f"{number:.4g}"


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def write_comparison(
    run_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write one markdown page comparing runs: overlaid training curves and a table of final metrics.

    Arguments:
        run_dirs: the run directories (each must hold a ``config.yaml``).
        out: the page (default :func:`default_comparison_path`); its figures go to the folder
            ``<out without .md>-curves/`` beside it.
        labels: a name per run for legends and the table (default: the folders' names).
        title: the page's heading (default ``"Comparison of N runs"``).

    Returns the page's path.
    """
    dirs = [Path(p) for p in run_dirs]
    if not dirs:
        raise ValueError("write_comparison needs at least one run directory")
    if labels is not None and len(labels) != len(dirs):
        raise ValueError(f"got {len(labels)} labels for {len(dirs)} runs")
    labels = list(labels) if labels is not None else _labels(dirs)
    if len(set(labels)) != len(labels):
        raise ValueError(f"run labels must be distinct, got {labels}")
    configs = [RunDir(d, enabled=False).load_config() for d in dirs]  # RunDirError for a non-run
    records = {label: _records(d) for label, d in zip(labels, dirs)}
    if not any(records.values()):
        raise RunDirError(f"none of the runs has logged anything yet ({', '.join(map(str, dirs))})")
    page = Path(out) if out is not None else default_comparison_path(dirs)
    if page.suffix != ".md":
        raise ValueError(f"the comparison page must be a .md file, got {page}")
    page.parent.mkdir(parents=True, exist_ok=True)
    figures = plot_curves(records, page.with_name(page.stem + "-curves"))

    finals = {label: final_metrics(recs) for label, recs in records.items()}
    columns = list(dict.fromkeys(k for f in finals.values() for k in f))
    columns.sort(key=lambda c: (c != "step", c.startswith("train ")))  # step, evaluations, training losses
    lines = [
        f"# {title or f'Comparison of {len(dirs)} runs'}",
        "",
        "| run | model on data | " + " | ".join(columns) + " |",
    ]
    lines.append("|---|---|" + "---|" * len(columns))
    for label, d, cfg in zip(labels, dirs, configs):
        report = d / "report.md"
        name = f"[{label}]({_rel(report, page.parent)})" if report.is_file() else label
        cells = [_fmt(finals[label].get(c)) for c in columns]
        lines.append(f"| {name} | {run_title(cfg)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Evaluation metrics at each run's latest evaluation; `train ...`: the last logged training loss.",
    ]
    lines += ["", "## Training curves", ""]
    lines += [f"![{f.stem[len(CURVE_PREFIX) :]}]({_rel(f, page.parent)})\n" for f in figures]
    lines += ["## Runs", ""]
    lines += [f"- {label}: `{d}`" for label, d in zip(labels, dirs)]
    page.write_text("\n".join(lines) + "\n")
    return page
