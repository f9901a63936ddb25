"""The results roots the UI may show, and the one rule that maps a URL to a file: a path is
served only when, with every link followed, it lies inside one of the roots. Everything
else (``..``, an encoded ``..``, an absolute path, a link pointing out, a missing file) is
the same ``NotFound``, so a probe learns nothing about the disk."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


class NotFound(Exception):
    """No such file under any results root (one answer for missing and forbidden)."""


@dataclass(frozen=True)
class Root:
    name: str  # the URL segment: the directory's basename, made unique
    path: Path  # resolved


class ResultsRoots:
    def __init__(self, paths: Sequence[str | Path]) -> None:
        roots: list[Root] = []
        for given in paths:
            path = Path(given).expanduser().resolve()
            name, n = path.name or "root", 2
            while any(r.name == name for r in roots):
                name, n = f"{path.name}-{n}", n + 1
            roots.append(Root(name, path))
        self.roots = roots

    def get(self, name: str) -> Root:
        for root in self.roots:
            if root.name == name:
                return root
        raise NotFound(name)

    def resolve(self, name: str, relative: str) -> Path:
        """The file or directory ``relative`` under root ``name``, or NotFound."""
        root = self.get(name)
        parts = [p for p in relative.replace("\\", "/").split("/") if p not in ("", ".")]
        if any(p == ".." or "\x00" in p for p in parts) or relative.startswith("/"):
            raise NotFound(relative)
        target = root.path.joinpath(*parts)
        try:
            real = target.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a link loop
            raise NotFound(relative) from None
        if real != root.path and not real.is_relative_to(root.path):
            raise NotFound(relative)  # a link out of the root
        return real

    def locate(self, path: str | Path) -> tuple[str, str] | None:
        """(root name, relative path) of ``path`` when it lies under a root, else None."""
        real = Path(path).expanduser().resolve()
        for root in self.roots:
            if real == root.path or real.is_relative_to(root.path):
                return root.name, real.relative_to(root.path).as_posix()
        return None


def result_url(ui_url: str, root: str | Path, path: str | Path, *, file: bool = False) -> str:
    """The UI's URL of ``path`` (a results directory, or with ``file`` a file in one) under the
    results root ``root``, as a UI started with that root names it (its basename). The flows
    link their Prefect artifacts with this."""
    root_path = Path(root).expanduser().resolve()
    relative = Path(path).expanduser().resolve().relative_to(root_path).as_posix()
    kind = "files" if file else "results"
    return f"{ui_url.rstrip('/')}/{kind}/{quote(root_path.name)}/{quote(relative)}"


def ui_url_from_env() -> str | None:
    """``LENSCAL_UI_URL`` (where a running `lenscal ui` is reachable), or None."""
    return os.environ.get("LENSCAL_UI_URL") or None
