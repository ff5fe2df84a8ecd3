"""Named registries: the one extension point for denoisers, samplers and planners.

A new one is a decorated function or class in its own file (`@DENOISERS.register("mine")`), made
known by importing that file; configs then name it. The registries live next to what they hold
(`worldmodel.models.DENOISERS`, `worldmodel.diffusion.SAMPLERS`, `worldmodel.planning.PLANNERS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> builder; `kind` names what it holds in error messages."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"A {self.kind} named {name!r} is already registered ({self._items[name]!r}).")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ValueError(f"Unknown {self.kind} {name!r}. Known: {self.names()}.")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def import_submodules(package: str, path: list[str]) -> None:
    """Imports every module of a package, so that what they register is known: a new denoiser,
    sampler or planner is one file in its package, with no import to add."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
