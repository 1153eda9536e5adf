"""Build a registered flow by name: ``build_flow("glow", event_shape=(1, 8, 8), levels=2, ...)``.

Keyword arguments are checked against the flow constructor's signature so a misspelt hyperparameter fails
with the list of valid ones instead of a ``TypeError`` deep inside.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from symgen.flows.base import Flow
from symgen.registry import FLOWS, closest

__all__ = ["build_flow", "flow_hyperparameters"]


def flow_hyperparameters(name: str) -> dict[str, Any]:
    """Keyword hyperparameters of the registered flow ``name`` and their defaults (not ``event_shape``)."""
    params = inspect.signature(FLOWS.get(name)).parameters
    return {k: p.default for k, p in params.items() if k != "event_shape"}


def build_flow(name: str, event_shape: Sequence[int] | int, **kwargs: Any) -> Flow:
    """Instantiate the flow registered as ``name`` (``symgen.registry.FLOWS.names()``) for ``event_shape``."""
    import symgen.flows  # noqa: F401  (registers every flow)

    valid = flow_hyperparameters(name)
    for key in kwargs:
        if key not in valid:
            raise ValueError(
                f"unknown hyperparameter '{key}' for flow '{name}'{closest(key, list(valid))}; "
                f"valid: {', '.join(valid)}"
            )
    return FLOWS.get(name)(event_shape=event_shape, **kwargs)
