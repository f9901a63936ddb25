"""What every flow shares: results directories by the team's naming convention (reused by a
rerun of the same run), retries on transient service errors, Prefect artifacts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lenscal.errors import NotReadyError, OverloadedError
from lenscal.ui.roots import result_url, ui_url_from_env
from lenscal_flows.settings import load_settings

#: Prefect task retries for service outages longer than the clients' own retry budget.
TASK_RETRIES = 4
TASK_RETRY_DELAYS = [5.0, 15.0, 45.0, 90.0]
TRANSIENT = (NotReadyError, OverloadedError, ConnectionError, TimeoutError)


def transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only what a service outage or overload explains
    (UNAVAILABLE, RESOURCE_EXHAUSTED, deadlines); never a bad request or a bug."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except BaseException:
        return False
    return False


def json_field(path: Path, key: str) -> Any:
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, json.JSONDecodeError):
        return None


def publish(out: Path, title: str, headline: list[str], figures: list[Path], key: str) -> None:
    """A markdown artifact (the decisive numbers, where the results are) and the key PNGs.
    With ``LENSCAL_UI_URL`` (a running `lenscal ui` over this results root) the artifact links
    the run's page and embeds the figures through it, so the Prefect UI shows them; without
    it, paths. Artifact keys: lowercase letters, digits and dashes."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        markdown=artifact_markdown(out, title, headline, figures, ui_url_from_env(), load_settings().results),
        key=artifact_key(key),
        description=title,
    )


def artifact_markdown(
    out: Path, title: str, headline: list[str], figures: list[Path], ui_url: str | None, root: str | Path
) -> str:
    lines = [f"# {title}", "", *[f"- {h}" for h in headline], ""]
    try:
        page = result_url(ui_url, root, out) if ui_url else None
    except ValueError:  # the run is not under the results root the UI serves
        page = None
    if page is None:
        lines.append(f"Results: `{out}`")
        if figures:
            lines += ["", "Figures:", *[f"- `{f}`" for f in figures]]
        return "\n".join(lines)
    lines.append(f"Results: [{out.name}]({page}) (`{out}`)")
    for figure in figures:
        try:
            url = result_url(str(ui_url), root, figure, file=True)
        except ValueError:
            lines += ["", f"- `{figure}`"]
            continue
        lines += ["", f"![{figure.name}]({url})"]
    return "\n".join(lines)


def artifact_key(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:100] or "lenscal"


class Progress:
    """A Prefect progress artifact for a run's steps (0-100%)."""

    def __init__(self, total: int, description: str) -> None:
        from prefect.artifacts import create_progress_artifact

        self.total, self.done = max(total, 1), 0
        self.id: Any = create_progress_artifact(progress=0.0, description=description)

    def advance(self, n: int = 1) -> None:
        from prefect.artifacts import update_progress_artifact

        self.done += n
        update_progress_artifact(
            artifact_id=self.id, progress=100.0 * min(self.done, self.total) / self.total
        )
