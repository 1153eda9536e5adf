"""Training plans: an ordered list of stages, each updating some of the model's optimizers.

``train.stages`` in a config is a list of mappings::

    train:
      stages:
        - {name: flow_pretrain, steps: 2000, optimizers: [flow]}
        - {name: warmup, steps: 500, optimizers: [ebm], lr: {ebm: 1.0e-4}}
        - {name: joint, steps: 5000}            # optimizers omitted: all of them

During a stage, the optimizers it does not name are frozen: their parameters get no gradient
(``requires_grad`` is off) and a model's ``ctx.optimize`` call for them changes nothing. ``lr`` sets the
base learning rate of a named optimizer when the stage starts. The run lasts the sum of the stages'
steps (``train.steps`` is set to it); ``ctx.stage`` tells the model which stage it is in. Used by VAEBM
(VAE, then EBM with the VAE frozen), CoopFlow(Pre) and NT-EBM (flow pre-training, then EBM).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stage", "parse_stages", "stage_at"]


@dataclass(frozen=True)
class Stage:
    """One stage: ``steps`` steps updating ``optimizers`` (``None``: all), with optional base ``lr``s."""

    name: str
    steps: int
    start: int
    optimizers: tuple[str, ...] | None = None
    lr: dict[str, float] = field(default_factory=dict)

    def updates(self, optimizer: str) -> bool:
        return self.optimizers is None or optimizer in self.optimizers

    @property
    def end(self) -> int:
        return self.start + self.steps


def parse_stages(
    spec: Sequence[Mapping[str, Any]] | None, optimizers: Sequence[str] | None = None
) -> list[Stage]:
    """Validate ``train.stages`` (and the optimizer names it uses, when ``optimizers`` is given)."""
    if not spec:
        return []
    if not isinstance(spec, Sequence) or isinstance(spec, str):
        raise ValueError(f"train.stages must be a list of mappings, got {spec!r}")
    stages, start, names = [], 0, set()
    for i, item in enumerate(spec):
        where = f"train.stages[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be a mapping with name and steps, got {item!r}")
        unknown = set(item) - {"name", "steps", "optimizers", "lr"}
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: name, steps, optimizers, lr"
            )
        name, steps = item.get("name"), item.get("steps")
        if not isinstance(name, str) or not name or name in names:
            raise ValueError(f"{where}.name must be a unique non-empty string, got {name!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{where}.steps must be a positive integer, got {steps!r}")
        opts = item.get("optimizers")
        if opts is not None and (not isinstance(opts, Sequence) or isinstance(opts, str) or not opts):
            raise ValueError(f"{where}.optimizers must be a non-empty list of optimizer names, got {opts!r}")
        lr = item.get("lr") or {}
        if not isinstance(lr, Mapping) or any(
            isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 for v in lr.values()
        ):
            raise ValueError(f"{where}.lr must map optimizer names to positive numbers, got {lr!r}")
        if optimizers is not None:
            bad = sorted(set(opts or ()) | set(lr) - set(optimizers))
            bad = [b for b in bad if b not in optimizers]
            if bad:
                raise ValueError(
                    f"{where} names unknown optimizer(s) {bad}; the model has {sorted(optimizers)}"
                )
        names.add(name)
        stages.append(
            Stage(name, steps, start, tuple(opts) if opts else None, {k: float(v) for k, v in lr.items()})
        )
        start += steps
    return stages


def stage_at(stages: Sequence[Stage], step: int) -> Stage | None:
    """The stage that runs training step ``step + 1`` (``step`` steps done); the last one past the end."""
    for stage in stages:
        if step < stage.end:
            return stage
    return stages[-1] if stages else None
