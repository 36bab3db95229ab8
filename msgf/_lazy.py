"""Lazy exports: a package names what it offers, and the defining module is imported on first
use, so importing the package (and the CLI's --help) stays cheap."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_getattr(package: str, table: Mapping[str, str], namespace: dict) -> Callable[[str], object]:
    """A module-level ``__getattr__`` resolving ``table[name]`` (a module path) on first use and
    caching the value in ``namespace`` (the package's globals())."""

    def __getattr__(name: str):
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
