"""Submitting a deployment run and following it to its end (state changes and the flow's
log lines), for `lenscal run` and `make demo`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from lenscal_flows.deployments import POOL

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def worker_online(pool: str = POOL) -> bool:
    from prefect.client.orchestration import get_client

    async def check() -> bool:
        async with get_client() as client:
            try:
                workers = await client.read_workers_for_work_pool(pool)
            except Exception:  # the pool does not exist yet
                return False
        return any(str(getattr(w.status, "value", w.status)).upper() == "ONLINE" for w in workers)

    return asyncio.run(check())


def submit(full_name: str, parameters: dict[str, Any]) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(full_name, parameters=parameters, timeout=0)


#: Seconds a watch rides out an unavailable Prefect API (a server or database restarting).
API_OUTAGE_S = 300.0


def _transient_api_error(exc: Exception) -> bool:
    """A connection failure or a 5xx answer: the server (or its database) is restarting."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code >= 500


def watch(
    flow_run_id: Any, *, echo: Any = print, poll_s: float = 2.0, timeout_s: float | None = None
) -> tuple[str, Any]:
    """Follow a flow run to a final state; returns (state type, the flow's return value)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    async def follow() -> tuple[str, Any]:
        seen_state, seen_logs = None, 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        async with get_client() as client:
            outage_since: float | None = None
            while True:
                try:
                    run = await client.read_flow_run(flow_run_id)
                    logs = await client.read_logs(
                        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                        sort=LogSort.TIMESTAMP_ASC,
                        offset=seen_logs,
                    )
                except Exception as exc:  # the API down for a while (its database restarting)
                    if not _transient_api_error(exc):
                        raise
                    now = time.monotonic()
                    if outage_since is None:
                        outage_since = now
                        echo(f"Prefect API unavailable ({type(exc).__name__}); still watching")
                    if now - outage_since > API_OUTAGE_S:
                        raise
                    await asyncio.sleep(poll_s)
                    continue
                if outage_since is not None:
                    echo("Prefect API back")
                    outage_since = None
                for entry in logs:  # first lines only: a traceback is in the run's log, and below
                    echo(f"  | {entry.message.splitlines()[0] if entry.message else ''}")
                seen_logs += len(logs)
                state = run.state.type.value if run.state else "PENDING"
                if state != seen_state:
                    echo(f"{run.name}: {run.state.name if run.state else state}")
                    seen_state = state
                if state in FINAL:
                    result = None
                    if state == "COMPLETED" and run.state is not None:
                        try:
                            result = await run.state.aresult(raise_on_failure=False)
                        except Exception:
                            result = None
                    elif run.state is not None and run.state.message:
                        echo(f"{run.name}: {run.state.message}")
                    return state, result
                if deadline is not None and time.monotonic() > deadline:
                    return "TIMEOUT", None
                await asyncio.sleep(poll_s)

    return asyncio.run(follow())
