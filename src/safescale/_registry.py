"""One registry mechanism for every kind of plugin (law forms, scorers, renderers, ...).

Built-ins register with the :meth:`Registry.register` decorator; outside packages add entries
through the entry-point group ``safescale.<kind>``, loaded on first lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from safescale._errors import UserError
from safescale._input import quote

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of plugins of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loaded_entry_points = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``; a second use of a name is a bug."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name`` without a decorator."""
        self.register(name)(obj)

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=f"safescale.{self.kind}"):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def get(self, name: str) -> T:
        """The plugin called ``name``; an unknown name is a :class:`UserError` listing choices."""
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items)) or "none"
            raise UserError(
                f"unknown {self.kind} {quote(name)}; choose one of: {choices}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
