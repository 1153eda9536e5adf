"""Experiment configuration as plain data: defaults, YAML files, ``--set`` overrides and validation.

A resolved config is a nested ``dict`` with the sections ``model``, ``data``, ``train`` plus ``seed`` and
``device``. Every key must exist in the defaults (the model's ``default_config()`` for ``model``, and
:func:`base_config` for the rest), so a typo such as ``train.stepz`` fails with the closest valid key
suggested. A default that is an empty dict (e.g. ``model.flow_args``) is an open section whose keys are
checked later by the component that consumes them.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "base_config",
    "default_config",
    "resolve_config",
    "load_yaml",
    "merge",
    "parse_override",
    "apply_overrides",
    "dump_yaml",
    "flat_keys",
    "validate_config",
    "resume_changes",
    "RESUMABLE_KEYS_DOC",
]


class ConfigError(ValueError):
    """An invalid configuration key or value."""


def base_config() -> dict[str, Any]:
    """Defaults shared by every model: data, training loop, seed and device."""
    return {
        "model": {},
        "data": {
            "name": "spiral",  # registered dataset name or a path (image folder / .npz)
            "root": None,  # folder with the dataset's files (on-disk datasets)
            "image_size": None,  # resize images to this size (None: native)
            "batch_size": 128,  # per-process batch size
            "split_seed": 0,  # seed of the train/test split
            "holdout_class": None,  # anomaly protocol: this class is the anomaly (LFBM Sec. 4.4)
            "n_test": 2000,  # held-out points drawn from toy distributions
        },
        "train": {
            "steps": 2000,
            "grad_clip": None,  # max gradient norm: a number for every optimizer, or {optimizer: number}
            "ema_decay": None,  # EMA of parameters used for sampling/eval (None: off)
            "ema_modules": [],  # EMA of these parts only (e.g. [generator]); empty: the whole model
            "log_every": 50,
            "ckpt_every": 500,
            "sample_every": 0,  # 0: only at the end
            "eval_every": 0,  # 0: only at the end
            "eval_metrics": [],
            "n_samples": 64,
            "keep_checkpoints": 2,
            "compile": False,  # opt-in torch.compile of the model
            "precision": "fp32",  # fp32 | bf16 | fp16 (autocast; fp16 adds a gradient scaler)
            "stages": [],  # training plan: [{name, steps, optimizers, lr}] (see symgen.stages); sets steps
            "tensorboard": False,  # also write scalars and sample grids to RUN/tensorboard/ (opt-in)
        },
        "seed": 0,
        "device": "cpu",
    }


def default_config(model_name: str) -> dict[str, Any]:
    """Full defaults for ``model_name``: :func:`base_config` with the model's own ``model`` section."""
    from symgen.registry import MODELS

    cfg = base_config()
    model_cls = MODELS.get(model_name)
    cfg["model"] = {"name": model_name, **copy.deepcopy(model_cls.default_config())}
    cfg["model"].setdefault("init_from", {})  # {part: RUN_DIR}: see symgen.init_from
    return cfg


def flat_keys(cfg: Mapping[str, Any], prefix: str = "") -> list[str]:
    """All dotted key paths of a nested mapping (leaves and sections)."""
    keys = []
    for k, v in cfg.items():
        path = f"{prefix}{k}"
        keys.append(path)
        if isinstance(v, Mapping) and v:
            keys.extend(flat_keys(v, path + "."))
    return keys


def _unknown(path: str, valid: Iterable[str]) -> ConfigError:
    valid = list(valid)
    match = difflib.get_close_matches(path, valid, n=1, cutoff=0.6)
    hint = f"; did you mean '{match[0]}'?" if match else ""
    return ConfigError(f"unknown config key '{path}'{hint}")


def _coerce(path: str, default: Any, value: Any) -> Any:
    """Check ``value`` against the type of ``default`` (None defaults accept anything)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' expects true/false, got {value!r}")
        return value
    if isinstance(default, int | float) and not isinstance(value, bool):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"config key '{path}' expects a number, got {value!r}") from None
        if isinstance(value, int | float):
            if isinstance(default, int) and not isinstance(default, bool):
                if float(value).is_integer():
                    return int(value)
                if not isinstance(value, float):
                    return value
                raise ConfigError(f"config key '{path}' expects an integer, got {value!r}")
            return float(value)
        raise ConfigError(f"config key '{path}' expects a number, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"config key '{path}' expects a string, got {value!r}")
    if isinstance(default, list) and not isinstance(value, list | tuple):
        raise ConfigError(f"config key '{path}' expects a list, got {value!r}")
    if isinstance(default, Mapping) and not isinstance(value, Mapping):
        raise ConfigError(f"config key '{path}' expects a mapping, got {value!r}")
    return list(value) if isinstance(default, list) else value


def merge(base: Mapping[str, Any], update: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``, rejecting keys absent from ``base``."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        path = f"{prefix}{key}"
        if key not in out:
            raise _unknown(path, flat_keys(base, prefix))
        default = out[key]
        if isinstance(default, Mapping) and default and isinstance(value, Mapping):
            out[key] = merge(default, value, path + ".")
        else:
            out[key] = copy.deepcopy(_coerce(path, default, value))
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.sub=value`` (value in YAML syntax) into a key path and a value."""
    if "=" not in text:
        raise ConfigError(f"--set expects key.sub=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects key.sub=value with a non-empty dotted key, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({_yaml_problem(exc)})") from None
    return key.split("."), value


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``problem at line L, column C`` of a YAML error, without PyYAML's multi-line context dump."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def apply_overrides(cfg: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set key.sub=value`` strings to ``cfg`` (keys must exist, see :func:`merge`)."""
    out = copy.deepcopy(dict(cfg))
    for text in overrides:
        path, value = parse_override(text)
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        out = merge(out, nested)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` with a clear error if it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open() as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: invalid YAML: {_yaml_problem(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text (UTF-8) file") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path} must contain a YAML mapping, got {type(data).__name__}")
    return dict(data)


def dump_yaml(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Write ``cfg`` as YAML (sorted keys off, so the file reads like the defaults)."""
    Path(path).write_text(yaml.safe_dump(dict(cfg), sort_keys=False))


def resolve_config(
    model_name: str,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve the config of a run: defaults (or ``base``) <- config file <- ``--set`` overrides.

    The ``model.name`` inside a config file must agree with ``model_name``.
    """
    cfg = dict(base) if base is not None else default_config(model_name)
    if config_file is not None:
        file_cfg = load_yaml(config_file)
        name = (file_cfg.get("model") or {}).get("name", model_name)
        if name != model_name:
            raise ConfigError(f"config file {config_file} is for model '{name}', not '{model_name}'")
        cfg = merge(cfg, file_cfg)
    return validate_config(apply_overrides(cfg, overrides))


_POSITIVE = ("log_every", "n_samples")
_NON_NEGATIVE = ("steps", "ckpt_every", "sample_every", "eval_every", "keep_checkpoints")


def validate_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check the values of the shared sections (ranges, evaluation names) before anything runs."""
    train = cfg.get("train", {})
    for key in _POSITIVE:
        if key in train and (not isinstance(train[key], int) or train[key] < 1):
            raise ConfigError(f"train.{key} must be a positive integer, got {train[key]!r}")
    for key in _NON_NEGATIVE:
        if key in train and (not isinstance(train[key], int) or train[key] < 0):
            raise ConfigError(f"train.{key} must be an integer >= 0, got {train[key]!r}")
    clip = train.get("grad_clip")
    clips = list(clip.values()) if isinstance(clip, Mapping) else [clip]
    if clip is not None and any(
        c is not None and (isinstance(c, bool) or not isinstance(c, int | float) or c <= 0) for c in clips
    ):
        raise ConfigError(
            f"train.grad_clip must be a positive number, a mapping optimizer -> number, or null; got {clip!r}"
        )
    if train.get("stages"):
        from symgen.stages import parse_stages

        try:
            stages = parse_stages(train["stages"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        train["steps"] = stages[-1].end  # a staged run lasts the sum of its stages
    decay = train.get("ema_decay")
    if decay is not None and (
        isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 < decay < 1
    ):
        raise ConfigError(f"train.ema_decay must be a number in (0, 1) or null, got {decay!r}")
    names = train.get("eval_metrics") or []
    if names:
        from symgen.registry import EVALS

        unknown = [n for n in names if not isinstance(n, str) or n not in EVALS]
        if unknown:
            raise ConfigError(
                f"train.eval_metrics: unknown evaluation(s) {unknown}; available: {', '.join(EVALS.names())}"
            )
    if train.get("precision", "fp32") not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision must be fp32, bf16 or fp16; got {train['precision']!r}")
    batch = cfg.get("data", {}).get("batch_size")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ConfigError(f"data.batch_size must be a positive integer, got {batch!r}")
    return cfg


RESUMABLE_KEYS_DOC = (
    "May change on resume (applied): every train.* key except train.ema_decay and train.ema_modules "
    "(steps, stages, intervals, evaluations, grad_clip, keep_checkpoints, precision, ...), learning rates "
    "and their schedules (model keys named lr or lr_*), device and data.root. Everything else "
    "(architecture, seed, data, batch size, EMA) is fixed by the checkpoint: changing it is refused with "
    "the list of keys."
)


def _resumable(path: str) -> bool:
    parts = path.split(".")
    if parts[0] == "train":
        return parts[1] not in ("ema_decay", "ema_modules")
    if parts[0] == "model":
        return any(p == "lr" or p.startswith("lr_") for p in parts[1:])
    return path in ("device", "data.root")


def _leaf_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping) and old and new:
        keys = list(dict.fromkeys([*old, *new]))
        return sum((_leaf_diff(old.get(k), new.get(k), f"{prefix}{k}.") for k in keys), [])
    return [] if old == new else [prefix.rstrip(".")]


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two resolved configs (a key missing on one side counts)."""
    return _leaf_diff(old, new)


def resume_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The config keys that differ between a run's stored config ``old`` and the resumed ``new``.

    Raises :class:`ConfigError` listing every changed key that cannot change on resume (see
    :data:`RESUMABLE_KEYS_DOC`); returns the (allowed) changed keys."""
    changed = _leaf_diff(old, new)
    refused = [k for k in changed if not _resumable(k)]
    if refused:
        raise ConfigError(
            f"cannot change {', '.join(refused)} when resuming: these are fixed by the checkpoint "
            "(start a new run with another --out instead). " + RESUMABLE_KEYS_DOC
        )
    return changed
