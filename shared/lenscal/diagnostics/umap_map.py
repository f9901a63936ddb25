"""UMAP map of the embedding sets (umap-learn, seeded): a picture of where injections fall
relative to real lenses and negatives in the finder's feature space, and, as a number, for
each real lens the share of its nearest neighbours (in the embeddings, not the map) that
are injections rather than negatives."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.diagnostics.feature_sets import load_sets
from lenscal.plotting import pyplot, save_figure


class UmapParams(CheckParams):
    embeddings: str = "feature_sets"
    n_neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 42
    lenses: str = "tier_a"
    neighbours_k: int = 10


@register_check("umap_map", UmapParams)
def umap_map(ctx: Context, params: UmapParams, out: Path) -> Outcome:
    """UMAP map: 2-D map of every embedding set, and the lenses' nearest-neighbour mix."""
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import StandardScaler

    sets = load_sets(ctx.step_dir(params.embeddings, wanted_by="umap_map"))
    names = np.concatenate([np.full(len(v), k) for k, v in sets.items()])
    x = StandardScaler().fit_transform(np.concatenate(list(sets.values())).astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap: "n_jobs overridden to 1 by setting random_state"
        import umap

        mapped = umap.UMAP(
            n_neighbors=min(params.n_neighbors, len(x) - 1),
            min_dist=params.min_dist,
            random_state=params.seed,
        ).fit_transform(x)
    table = pd.DataFrame({"set": names, "umap_1": mapped[:, 0], "umap_2": mapped[:, 1]})
    table.to_csv(out / "umap.csv", index=False)
    metrics: dict[str, object] = {f"{k}.n": len(v) for k, v in sets.items()}
    headline = []
    if params.lenses in sets:
        k = min(params.neighbours_k, len(x) - 1)
        index = NearestNeighbors(n_neighbors=k + 1).fit(x)
        _, neighbours = index.kneighbors(x[names == params.lenses])
        others = names[neighbours[:, 1:]]  # the first neighbour is the point itself
        for name in sets:
            share = float((others == name).mean())
            metrics[f"{params.lenses}.neighbours.{name}"] = share
        mix = ", ".join(f"{name} {metrics[f'{params.lenses}.neighbours.{name}']:.0%}" for name in sets)
        headline.append(f"{params.lenses}: its {k} nearest neighbours in embedding space are {mix}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name in sets:
        pick = names == name
        ax.scatter(
            mapped[pick, 0],
            mapped[pick, 1],
            s=6 if name != params.lenses else 14,
            label=f"{name} ({pick.sum()})",
        )
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.legend(markerscale=2)
    fig.tight_layout()
    return Outcome(metrics, headline, None, [save_figure(fig, out / "umap.png")])
