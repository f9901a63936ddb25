"""The in-process Injector: InjectorCore in this process (hosts read from local shards)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lenscal.injection.api import (
    InjectResult,
    PriorDraw,
    RenderOptions,
    ShardRows,
    concat_results,
    split_inject,
)
from lenscal.injection.core import MAX_PER_CALL, InjectorCore
from lenscal.injection.hosts import HostBatch
from lenscal.physics import ArcParams


class LocalInjector:
    def __init__(self, device: str = "auto", chunk_size: int | None = None, per_piece: int = 256) -> None:
        self.core = InjectorCore(device=device, chunk_size=chunk_size)
        self.per_piece = per_piece  # hosts per core call: bounds memory whatever the call size

    def render(
        self, params: ArcParams, *, size: int = 101, options: RenderOptions | None = None
    ) -> np.ndarray:
        opts = options or RenderOptions()
        parts = [
            self.core.render(params.slice(s, s + MAX_PER_CALL), size=size, options=opts,
                             indices=range(s, min(s + MAX_PER_CALL, len(params))))
            for s in range(0, len(params), MAX_PER_CALL)
        ]  # fmt: skip
        return np.concatenate(parts)

    def inject(
        self,
        hosts: np.ndarray | ShardRows,
        *,
        params: ArcParams | None = None,
        draw: PriorDraw | None = None,
        ids: Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        options: RenderOptions | None = None,
        return_arcs: bool = False,
    ) -> InjectResult:
        results = []
        for piece in split_inject(
            hosts, params=params, draw=draw, ids=ids, indices=indices, per_piece=self.per_piece
        ):
            if isinstance(piece.hosts, ShardRows):
                batch = self.core.shard_hosts(piece.hosts.shard_dir, list(piece.hosts.rows))
            else:
                batch = HostBatch(np.asarray(piece.hosts, dtype=np.float32), piece.ids or [], None)
            results.append(
                self.core.inject(
                    batch,
                    params=piece.params,
                    draw=piece.draw,
                    options=options or RenderOptions(),
                    indices=piece.indices,
                    return_arcs=return_arcs,
                )
            )
        return concat_results(results)

    def wait_ready(self, timeout_s: float = 60.0, connect_timeout_s: float | None = None) -> None:
        """Ready at once."""

    def close(self) -> None:
        """Nothing held beyond memory."""

    def __enter__(self) -> LocalInjector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
