"""The selection function: completeness over Einstein radius x seeing x depth (x source and
lensed magnitude), measured by injecting arcs into real hosts and scoring them.

``from lenscal.selection import SelectionFunction`` (lenscal.selection.function) loads what
a grid run measured; imported on first use, so the grid's config and runner modules stay
light to import."""

from typing import Any

__all__ = ["SelectionFunction"]


def __getattr__(name: str) -> Any:
    if name == "SelectionFunction":
        from lenscal.selection.function import SelectionFunction

        return SelectionFunction
    raise AttributeError(f"module 'lenscal.selection' has no attribute {name!r}")
