"""Initialise named parts of a model from other runs (``model.init_from``).

``model.init_from`` maps a sub-module of the model (a dotted attribute path such as ``flow`` or
``prior.flow``) to another run::

    model:
      init_from:
        flow: runs/flow-pretrained                       # the run's latest checkpoint, same part name
        vae: {run: runs/vae-digits, step: 20000, source: ""}   # that step; "" = the whole source model

The source checkpoint is read with the safe loader; its parameters under ``source.`` (default: the part's
own name) are loaded into the part, strictly: a missing or unexpected key, or a shape mismatch, raises a
``ValueError`` naming both shapes. The resolved form (absolute run path, checkpoint step, source prefix)
replaces the entry in the run's config, so ``config.yaml`` records exactly where each part came from.
Used by CoopFlow(Pre) (pre-trained flow), VAEBM (pre-trained VAE) and NT-EBM (pre-trained flow).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["apply_init_from", "resolve_part"]


def resolve_part(model: nn.Module, part: str) -> nn.Module:
    """The sub-module at the dotted attribute path ``part`` of ``model`` (``""``: the model itself)."""
    if not part:
        return model
    try:
        sub = model.get_submodule(part)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(f"model.init_from: the model has no part '{part}'; its parts: {names}") from None
    return sub


def _entry(part: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str | Path):
        return {"run": str(value), "step": None, "source": part}
    if isinstance(value, Mapping) and "run" in value and set(value) <= {"run", "step", "source"}:
        step = value.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise ValueError(f"model.init_from.{part}.step must be a checkpoint step (integer), got {step!r}")
        return {"run": str(value["run"]), "step": step, "source": str(value.get("source", part))}
    raise ValueError(
        f"model.init_from.{part} must be a run directory or {{run, step, source}}, got {value!r}"
    )


def apply_init_from(model: nn.Module, spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """Load every part named in ``spec`` from its source run; returns the resolved spec for the config."""
    from symgen.rundir import RunDir

    resolved: dict[str, Any] = {}
    for part, value in (spec or {}).items():
        entry = _entry(part, value)
        target = resolve_part(model, part)
        run = RunDir(Path(entry["run"]).expanduser().resolve(), enabled=False)
        if not run.config_path.is_file():
            raise ValueError(
                f"model.init_from.{part}: {entry['run']} is not a run directory (no config.yaml)"
            )
        kinds = dict(getattr(model, "init_from_kinds", None) or {}).get(part)
        if kinds:  # the model names which kinds of runs may provide this part
            source_kind = (run.load_config().get("model") or {}).get("name")
            if source_kind not in kinds:
                raise ValueError(
                    f"model.init_from.{part}: {entry['run']} is a '{source_kind}' run; "
                    f"accepted model kinds for '{part}': {', '.join(kinds)}"
                )
        if part in (getattr(model, "init_from_same_event_shape", None) or ()):
            _check_event_shape(model, part, run.load_config(), entry["run"])
        if entry["step"] is None:
            state = run.load_latest()
        else:
            from symgen.checkpoint import load_checkpoint

            state = load_checkpoint(run.checkpoint_path(entry["step"]))
        prefix = f"{entry['source']}." if entry["source"] else ""
        weights = {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
        if not weights:
            raise ValueError(
                f"model.init_from.{part}: the checkpoint of {run.path} has no parameters under '{prefix}'; "
                "set source: to the part's name in that run ('' for the whole model)"
            )
        _load_strict(target, weights, part, run.path)
        resolved[part] = {"run": str(run.path), "step": int(state["step"]), "source": entry["source"]}
    return resolved


def _check_event_shape(model: nn.Module, part: str, source_cfg: dict[str, Any], source: str) -> None:
    """A part that must model this model's data (``init_from_same_event_shape``) comes from a run on data
    of the same event shape (a Glow is size-agnostic, so its weights alone would load silently)."""
    from symgen.runs import load_data  # runs imports this module

    own = tuple(getattr(model, "event_shape", ()))
    theirs = tuple(load_data(source_cfg).info.event_shape)
    if own and theirs != own:
        raise ValueError(
            f"model.init_from.{part}: {source} was trained on data of event shape {theirs} "
            f"({source_cfg['data']['name']}); this model's data have event shape {own}"
        )


def _load_strict(target: nn.Module, weights: dict[str, torch.Tensor], part: str, source: Path) -> None:
    own = target.state_dict()
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    shapes = [
        f"{k}: this model {tuple(own[k].shape)} vs {source} {tuple(weights[k].shape)}"
        for k in own
        if k in weights and own[k].shape != weights[k].shape
    ]
    if missing or extra or shapes:
        detail = "; ".join(
            ([f"missing in the source: {missing[:5]}"] if missing else [])
            + ([f"not in this model: {extra[:5]}"] if extra else [])
            + shapes[:5]
        )
        raise ValueError(f"model.init_from.{part}: the part does not match {source}: {detail}")
    with torch.no_grad():
        target.load_state_dict(weights)
