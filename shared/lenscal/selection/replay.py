"""Regenerate one injection of a finished (or running) grid run from its results directory
alone: the definition in ``meta.json``, the same hosts, and the one inject step the runner
uses. For looking at an injection whose score surprises you, or checking a number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenscal.data.shards import ShardReader
from lenscal.injection.api import Injector
from lenscal.selection.config import GridConfig, GridError
from lenscal.selection.plan import plan_grid
from lenscal.selection.runner import inject_chunk
from lenscal.workspace import canonical_sha256


@dataclass
class Replayed:
    number: int
    cell: str
    host: np.ndarray  # (3, H, W) float32 nmgy, as read from the shards
    injected: np.ndarray  # host + arc, as the scorer saw it
    arc: np.ndarray  # the arc alone (with its noise, when the grid adds Poisson noise)
    truth: pd.Series  # parameters and truth, as the injector reports them


def config_of(directory: str | Path) -> tuple[GridConfig, dict[str, Any]]:
    """The GridConfig a results directory was run with (and its meta.json). Refuses when the
    named prior no longer has the content the run used."""
    from lenscal.selection.compare import read_run

    meta = read_run(Path(directory))
    definition = dict(meta["definition"])
    prior = definition.pop("prior")
    fields = {k: v for k, v in definition.items() if k in GridConfig.model_fields}
    config = GridConfig(
        name=meta["name"], description=meta.get("description", ""), prior=prior["name"], **fields
    )
    now = canonical_sha256(config.prior_model().model_dump(mode="json"))
    if now != prior["sha256"]:
        raise GridError(
            f"{directory}: prior {prior['name']!r} has changed since this run (sha256 {prior['sha256'][:12]} "
            f"then, {now[:12]} now); its injections cannot be regenerated from the name"
        )
    return config, meta


def replay(directory: str | Path, number: int, *, hosts: ShardReader, injector: Injector) -> Replayed:
    """Injection ``number`` (the ``number`` column of injections.parquet) made again, alone."""
    config, meta = config_of(directory)
    if hosts.index.source_sha256 != meta["definition"]["hosts"]["shards_sha256"]:
        raise GridError(f"{hosts.directory}: not the shards this run used (their source hash differs)")
    plan = plan_grid(hosts.manifest(), config)
    found = [inj for inj in plan.injections if inj.number == number]
    if not found:
        known = f"0..{config.per_cell * len(config.cells()) - 1}"
        raise GridError(
            f"injection {number}: not in this run (numbers run {known}; cells without hosts have none)"
        )
    result = inject_chunk(config, found, hosts, injector, return_arcs=True)
    assert result.arcs is not None
    host = hosts.read(np.array([found[0].host_row]))[0]
    return Replayed(number, found[0].cell, host, result.images[0], result.arcs[0], result.truth.iloc[0])


def save_replay(replayed: Replayed, out: Path) -> tuple[Path, Path]:
    """``out``.npz (host, injected, arc, truth as JSON) and ``out``.png (the three, in colour)."""
    from lenscal.fsutil import atomic_path
    from lenscal.plotting import pyplot, rgb, save_figure

    out.parent.mkdir(parents=True, exist_ok=True)
    npz = out.with_suffix(".npz")
    with atomic_path(npz) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle, host=replayed.host, injected=replayed.injected, arc=replayed.arc,
            truth=np.array(replayed.truth.to_json()),
        )  # fmt: skip
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax, (title, image) in zip(
        axes, (("host", replayed.host), ("host + arc", replayed.injected), ("arc", replayed.arc)), strict=True
    ):
        ax.imshow(rgb(image), origin="lower")
        ax.set_title(title)
        ax.set_axis_off()
    t = replayed.truth
    fig.suptitle(
        f'injection {replayed.number} ({replayed.cell}): theta_E {t.get("theta_e", float("nan")):.2f}"'
    )
    png = save_figure(fig, out.with_suffix(".png"))
    return npz, png
