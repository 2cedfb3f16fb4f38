"""Named entries imported on first use: ``name -> "module:attr"``, for network architectures and recipes.

Model files refer to networks and recipes by name, never by import path, so
code can move without breaking files; listing the names imports nothing.

>>> from napari_nlcl.named import Registry
>>> r = Registry("gadget", {"sqrt": "math:sqrt"})
>>> r.names(), r.load("sqrt")(9.0)
(['sqrt'], 3.0)
"""

from __future__ import annotations

import importlib
from typing import Any


class Registry(dict):
    """A ``dict`` of ``name -> "module:attr"`` whose entries are imported when first used."""

    def __init__(self, what: str, entries: dict[str, str] | None = None):
        super().__init__(entries or {})
        self.what = what

    def register(self, name: str, path: str) -> None:
        """Add (or replace) ``name``; ``path`` is ``"module:attr"``."""
        if ":" not in path:
            raise ValueError(f"{self.what} path must look like 'module:Class', got {path!r}")
        self[name] = path

    def names(self) -> list[str]:
        return sorted(self)

    def load(self, name: str) -> Any:
        """The object registered as ``name``; an unknown name gets the list of known ones."""
        if name not in self:
            known = ", ".join(self.names()) or "none"
            raise ValueError(f"unknown {self.what} {name!r} (known: {known}); is napari-nlcl up to date?")
        module, attr = self[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def name_of(self, obj: Any) -> str | None:
        """The name ``obj`` (a class or a function) is registered under, or None."""
        path = f"{obj.__module__}:{obj.__qualname__}"
        return next((name for name, registered in self.items() if registered == path), None)
