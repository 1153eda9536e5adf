"""Training curves: the scalars of ``metrics.jsonl`` against the step, one figure per quantity group.

Every numeric value of a ``train`` record (losses, gradient norms, sampler acceptance rates and step
sizes, throughput, ...) and of an ``eval`` record (evaluation metrics over training) becomes a curve.
Curves are sorted into groups by name (:func:`curve_group`); each group is one figure with a panel per
curve, the raw points drawn faint behind an exponentially smoothed line (:func:`smooth`). The same figure
overlays several runs (:func:`plot_curves` with more than one run), which is what ``symgen report A B``
and ``symgen reproduce`` draw.

Matplotlib is imported only when a figure is drawn, so importing this module is cheap.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Series",
    "scalar_value",
    "curve_group",
    "collect_curves",
    "smooth",
    "plot_curves",
    "CURVE_PREFIX",
    "group_rank",
]

CURVE_PREFIX = "curves-"
"""File names of curve figures: ``curves-<group>.png``."""

Series = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
"""``{group: {curve name: (steps, values)}}`` as returned by :func:`collect_curves`."""

_META_KEYS = frozenset({"kind", "step", "time"})
_GROUP_ORDER = ("losses", "gradients", "sampler", "eval", "learning_rate", "other", "throughput")


def scalar_value(value: Any) -> float | None:
    """A logged value as a float: numbers, and the strings ``"nan"``, ``"inf"``, ``"-inf"`` that
    :meth:`symgen.rundir.RunDir.log` writes for non-finite floats; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf"):
        return float(value)
    return None


def curve_group(key: str, kind: str = "train") -> str:
    """The figure a logged scalar belongs to.

    ``eval`` records form the group ``eval``. A training key ``"prefix/name"`` (e.g. one optimizer's
    ``"generator/grad_norm"``) goes to the group ``prefix``; other training keys are grouped by name:
    gradient norms (``gradients``), sampler acceptance rates, step sizes, ESS and R-hat (``sampler``),
    learning rates (``learning_rate``), losses, NLL, bits/dim, KL and ELBO (``losses``), rates per
    second (``throughput``), and everything else (``other``).
    """
    if kind == "eval":
        return "eval"
    if "/" in key:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", key.split("/", 1)[0]) or "other"
    name = key.lower()
    if ("grad" in name and "norm" in name) or name in ("gnorm", "grad"):
        return "gradients"
    if any(w in name for w in ("accept", "step_size", "stepsize")) or re.search(
        r"(^|_)(ess|rhat|r_hat)($|_)", name
    ):
        return "sampler"
    if name == "lr" or name.startswith("lr_") or name.endswith("_lr") or "learning_rate" in name:
        return "learning_rate"
    if name.endswith("_per_s") or name.endswith("per_sec"):
        return "throughput"
    if any(w in name for w in ("loss", "nll", "bpd", "elbo")) or re.search(r"(^|_)kl($|_)", name):
        return "losses"
    return "other"


def collect_curves(records: Iterable[Mapping[str, Any]]) -> Series:
    """Group the numeric values of ``train`` and ``eval`` records by :func:`curve_group`.

    Records of other kinds (``resume``, ``interrupted``) and records without an integer ``step`` are
    ignored; groups come in a fixed order (losses, gradients, sampler, eval, ...), curves in the order
    they first appear. When a step is logged twice (a resumed run), the later value wins.
    """
    points: dict[tuple[str, str], dict[int, float]] = {}
    for rec in records:
        kind = rec.get("kind", "train")
        step = rec.get("step")
        if kind not in ("train", "eval") or isinstance(step, bool) or not isinstance(step, int):
            continue
        for key, raw in rec.items():
            if key in _META_KEYS:
                continue
            value = scalar_value(raw)
            if value is not None:
                points.setdefault((curve_group(key, kind), key), {})[step] = value
    groups: Series = {}
    for (group, key), by_step in points.items():
        steps = np.array(sorted(by_step), dtype=np.int64)
        values = np.array([by_step[int(s)] for s in steps], dtype=np.float64)
        groups.setdefault(group, {})[key] = (steps, values)
    return {g: groups[g] for g in sorted(groups, key=group_rank)}


def group_rank(group: str) -> tuple[int, str]:
    """Known groups in :data:`_GROUP_ORDER`, then the others (optimizer prefixes) alphabetically."""
    return (_GROUP_ORDER.index(group), "") if group in _GROUP_ORDER else (len(_GROUP_ORDER), group)


def smooth(values: np.ndarray, weight: float | None = None) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing (no pull towards the first value).

    ``weight`` in ``[0, 1)`` (0: no smoothing); by default it grows with the number of points so that
    about a tenth of a long curve is averaged (``1 - 10 / n``, capped at 0.95; none below 12 points).
    Non-finite values are skipped and keep their place as NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if weight is None:
        weight = 0.0 if n < 12 else min(0.95, 1.0 - 10.0 / n)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out = np.full(n, np.nan)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        acc = weight * acc + (1.0 - weight) * v
        norm = weight * norm + (1.0 - weight)
        out[i] = acc / norm
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "curves"


def plot_curves(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    out_dir: str | os.PathLike[str],
    *,
    weight: float | None = None,
    dpi: int = 100,
) -> list[Path]:
    """Draw ``out_dir/curves-<group>.png`` for every curve group of the runs' records.

    Arguments:
        runs: ``{label: records}``: the records of ``metrics.jsonl`` of one run (one colour, no legend)
            or of several runs (one colour per run, overlaid, with a legend).
        out_dir: folder of the figures (created); stale ``curves-*.png`` files there are removed.
        weight: smoothing weight (see :func:`smooth`; default: by the number of points).

    Returns the written paths, in group order (empty when no run logged a scalar).
    """
    if not runs:
        raise ValueError("plot_curves needs at least one run")
    per_run = {label: collect_curves(records) for label, records in runs.items()}
    groups: dict[str, list[str]] = {}
    for series in per_run.values():
        for group, curves in series.items():
            names = groups.setdefault(group, [])
            names += [k for k in curves if k not in names]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{CURVE_PREFIX}*.png"):
        stale.unlink()
    paths = []
    for group in sorted(groups, key=group_rank):
        path = out / f"{CURVE_PREFIX}{_slug(group)}.png"
        _draw_group(group, groups[group], per_run, path, weight, dpi)
        paths.append(path)
    return paths


def _draw_group(
    group: str,
    names: list[str],
    per_run: Mapping[str, Series],
    path: Path,
    weight: float | None,
    dpi: int,
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 2.9 * nrows + 0.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    several = len(per_run) > 1
    colors = [f"C{i % 10}" for i in range(len(per_run))]
    for ax, name in zip(axes, names):
        positive = True
        spread: list[float] = []
        for color, (label, series) in zip(colors, per_run.items()):
            if name not in series.get(group, {}):
                continue
            steps, values = series[group][name]
            few = len(steps) <= 3
            ax.plot(steps, values, color=color, alpha=0.25, lw=1.0, marker="o" if few else None, ms=3)
            ax.plot(steps, smooth(values, weight), color=color, lw=1.6, label=label if several else None,
                    marker="o" if few else None, ms=4)  # fmt: skip
            finite = values[np.isfinite(values)]
            positive = positive and bool(len(finite)) and bool((finite > 0).all())
            spread += [float(finite.min()), float(finite.max())] if len(finite) else []
        if positive and spread and max(spread) / min(spread) > 100:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    if several:
        handles, labels = [], []
        for ax in axes[: len(names)]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 4), fontsize=8)
    else:
        fig.suptitle(group, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
