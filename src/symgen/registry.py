"""Name -> object registries for models, datasets, metrics, flows and experiments.

Every pluggable part of symgen registers itself under a short name so that configs and the CLI
can refer to it (``symgen list`` prints them all). A registry is a plain dict with a decorator.

Registration is lazy: a registry knows the modules that fill it (``plugins``) and imports them the
first time it is read, so importing the core (samplers, flows, densities) pulls in none of the heavy
optional dependencies (scikit-learn, matplotlib, torchmetrics) that models and evaluations use.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "MODELS", "DATASETS", "METRICS", "FLOWS", "EVALS", "EXPERIMENTS", "closest"]

T = TypeVar("T")


def closest(name: str, options: list[str] | tuple[str, ...]) -> str:
    """Return a ``" (did you mean 'x'?)"`` hint for ``name`` among ``options``, or ``""``."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry(Generic[T]):
    """A named collection of objects with helpful errors for unknown names."""

    def __init__(self, kind: str, plugins: Sequence[str] = ()) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self._plugins = tuple(plugins)
        self._loaded = not plugins

    def _load(self) -> None:
        """Import the modules that register into this registry (once, on first read)."""
        if not self._loaded:
            self._loaded = True
            for module in self._plugins:
                importlib.import_module(module)

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
        self._load()
        if name not in self._items:
            raise KeyError(
                f"unknown {self.kind} '{name}'{closest(name, self.names())}; "
                f"available: {', '.join(self.names())}"
            )
        return self._items[name]

    def help(self, name: str) -> str:
        self._load()
        return self._help.get(name, "")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)


MODELS: Registry[Any] = Registry("model", ["symgen.models"])
DATASETS: Registry[Any] = Registry("dataset", ["symgen.data"])
METRICS: Registry[Any] = Registry("metric", ["symgen.metrics"])
FLOWS: Registry[Any] = Registry("flow", ["symgen.flows"])
EVALS: Registry[Any] = Registry("evaluation", ["symgen.evaluation", "symgen.tasks"])
EXPERIMENTS: Registry[Any] = Registry("experiment")
