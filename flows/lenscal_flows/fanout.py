"""Fan-out of independent work (grid chunks, survey parts) over a Prefect task runner:
threads by default, a Dask cluster when a scheduler address is given (prefect-dask). Each
task opens its own gRPC clients from the endpoints (picklable), so it can run in another
process or on another machine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def task_runner(workers: int, dask_address: str | None) -> Any:
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max(workers, 1))


def groups(items: Sequence[int], n: int) -> list[list[int]]:
    """``items`` dealt round-robin into at most ``n`` non-empty groups."""
    dealt = [list(items[i :: max(n, 1)]) for i in range(max(n, 1))]
    return [g for g in dealt if g]
