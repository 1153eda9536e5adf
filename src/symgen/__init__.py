"""symgen: symbiotic deep generative models on one composable core.

The core contract is an unnormalized log-density over a batched tensor (``log_prob(x) -> (B,)``) and
samplers that act on any such density (:mod:`symgen.samplers`); flows and priors are modules that
return ``torch.distributions.Distribution`` objects (:mod:`symgen.flows`); models compose them
(:mod:`symgen.models`) and are trained by one loop (:mod:`symgen.trainer`).

Importing ``symgen`` (or the core, ``symgen.samplers``, ``symgen.flows``, ``symgen.densities``) is light:
the modules that register models, datasets, evaluations and metrics are imported when a registry is
first read (:mod:`symgen.registry`), and the sub-packages below on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBPACKAGES = ("data", "evaluation", "flows", "metrics", "models", "tasks", "samplers", "densities", "nets")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"symgen.{name}")
    raise AttributeError(f"module 'symgen' has no attribute {name!r}")
