"""Progress bars for long work (rich): count, rate, elapsed and remaining time; switched off
for non-interactive or quiet runs."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

Advance = Callable[[int], None]


class RateColumn(ProgressColumn):
    """Items per second, once measured."""

    def render(self, task: Any) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "   -/s")


@contextlib.contextmanager
def progress_bar(total: int, description: str, *, enabled: bool | None = None) -> Iterator[Advance]:
    """Yield ``advance(n)``; draws a bar on stderr when enabled (default: stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda n: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
