"""Fréchet distance between embedding sets (D05 step 9): how far the finder's view of
injections sits from its view of real lenses, as Gaussians, next to the distance between
two things it should separate (lenses and negatives) for scale."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lenscal.diagnostics.base import CheckParams, Context, Outcome, register_check
from lenscal.diagnostics.feature_sets import load_sets, needed
from lenscal.plotting import pyplot, save_figure
from lenscal.stats.embeddings import frechet_distance

DEFAULT_PAIRS = (
    ("tier_a", "inj_low_bf"),
    ("tier_a", "inj_high_bf"),
    ("tier_a", "negatives"),
    ("inj_low_bf", "negatives"),
)


class FrechetParams(CheckParams):
    embeddings: str = "feature_sets"
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS


@register_check("frechet", FrechetParams)
def frechet(ctx: Context, params: FrechetParams, out: Path) -> Outcome:
    """Fréchet distance between pairs of embedding sets (Gaussian fits)."""
    sets = load_sets(ctx.step_dir(params.embeddings, wanted_by="frechet"))
    rows = []
    for a, b in params.pairs:
        for name in (a, b):
            needed(sets, name, "frechet")
        rows.append(
            {
                "a": a,
                "b": b,
                "n_a": len(sets[a]),
                "n_b": len(sets[b]),
                "frechet_distance": frechet_distance(sets[a], sets[b]),
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(out / "frechet.csv", index=False)
    metrics = {f"{r.a}__{r.b}": float(r.frechet_distance) for _, r in table.iterrows()}
    headline = ["; ".join(f"{r.a} vs {r.b}: {r.frechet_distance:.4g}" for _, r in table.iterrows())]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * len(table)))
    ax.barh([f"{r.a} vs {r.b}" for _, r in table.iterrows()], table["frechet_distance"])
    ax.set_xlabel("Fréchet distance (embedding units²)")
    ax.invert_yaxis()
    fig.tight_layout()
    return Outcome(metrics, headline, table, [save_figure(fig, out / "frechet.png")])
