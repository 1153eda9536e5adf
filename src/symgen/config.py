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
            "grad_clip": None,  # max global gradient norm per optimizer (None: no clipping)
            "ema_decay": None,  # EMA of parameters used for sampling/eval (None: off)
            "log_every": 50,
            "ckpt_every": 500,
            "sample_every": 0,  # 0: only at the end
            "eval_every": 0,  # 0: only at the end
            "eval_metrics": [],
            "n_samples": 64,
            "keep_checkpoints": 2,
            "compile": False,  # opt-in torch.compile of the model
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
    return key.split("."), yaml.safe_load(raw) if raw.strip() else None


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
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
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
    return apply_overrides(cfg, overrides)
