"""Name -> object registries for models, datasets, metrics, flows and experiments.

Every pluggable part of symgen registers itself under a short name so that configs and the CLI
can refer to it (``symgen list`` prints them all). A registry is a plain dict with a decorator.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "MODELS", "DATASETS", "METRICS", "FLOWS", "EVALS", "EXPERIMENTS", "closest"]

T = TypeVar("T")


def closest(name: str, options: list[str] | tuple[str, ...]) -> str:
    """Return a ``" (did you mean 'x'?)"`` hint for ``name`` among ``options``, or ``""``."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry(Generic[T]):
    """A named collection of objects with helpful errors for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (a one-line ``help`` is shown by ``symgen list``)."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise KeyError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            doc = help or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            self._help[name] = doc
            return obj

        return deco

    def add(self, name: str, obj: T, help: str = "") -> T:
        """Register ``obj`` under ``name`` without the decorator syntax."""
        return self.register(name, help)(obj)

    def get(self, name: str) -> T:
        """Return the object registered as ``name``; unknown names raise ``KeyError`` with a suggestion."""
        if name not in self._items:
            raise KeyError(
                f"unknown {self.kind} '{name}'{closest(name, self.names())}; "
                f"available: {', '.join(self.names())}"
            )
        return self._items[name]

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


MODELS: Registry[Any] = Registry("model")
DATASETS: Registry[Any] = Registry("dataset")
METRICS: Registry[Any] = Registry("metric")
FLOWS: Registry[Any] = Registry("flow")
EVALS: Registry[Any] = Registry("evaluation")
EXPERIMENTS: Registry[Any] = Registry("experiment")
