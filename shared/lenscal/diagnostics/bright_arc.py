"""Bright-arc test (D05 steps 1-6): is the gap between real-lens recall and injection
completeness a matter of brightness? The same hosts (``n_hosts`` validation negatives drawn
by the seed) receive one arc in each 1-mag unlensed-source bin (18-26 r AB) at theta_E
1.5", and each variant (Poisson noise, clip range, beta_frac range, gain) is scored on the
same parameters: injection i of bin b has the same lens, source and host in every variant
(streams keyed by (seed, bin, i)), so variants differ only by what the variant changes.

Each variant is compared with the reference (the baseline): the largest |dp| over matched
injections and, per threshold, whether exactly the same injections are detected. A Poisson
variant at gain 1e12 e-/nmgy must detect exactly what the noiseless baseline detects."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from lenscal.diagnostics.base import CheckParams, Context, DiagnosticError, Outcome, register_check
from lenscal.diagnostics.sampling import fixed_thresholds, host_rows, inject_rows, score_images
from lenscal.injection.api import InjectResult
from lenscal.injection.priors import get_prior
from lenscal.plotting import pyplot, save_figure, threshold_colour
from lenscal.preprocess import PreprocessOverride
from lenscal.progress import progress_bar
from lenscal.selection.compare import paired_counts, paired_marginal
from lenscal.selection.tables import counts, pooled

MAG_BINS = (18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0)


class Variant(CheckParams):
    name: str
    poisson_gain: float | None = None  # e-/nmgy; None: noiseless arcs
    clip_range: float | None = None  # MAD units at scoring time; None: the model's
    beta_frac_range: tuple[float, float] | None = None  # None: the check's


class BrightArcSetup(CheckParams):
    n_hosts: int = 200
    theta_e: float = 1.5  # arcsec
    mag_bins: tuple[float, ...] = MAG_BINS  # unlensed source r, AB: bin edges
    #: The team's D05 bright-arc runs used 0.1-0.55 (run_d05_full_reeval.sh) but for the
    #: "unrestricted" variant (0.1-1.0).
    beta_frac_range: tuple[float, float] = (0.1, 0.55)
    prior: str = "default"
    seed: int = 42
    split: str = "val"
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    #: Host pool: IM1 (the split's negatives, as the team's D05) or IM2 (LRG-like hosts).
    injection_model: Literal["IM1", "IM2"] = "IM1"


class BrightArcParams(BrightArcSetup):
    variants: tuple[Variant, ...] = (Variant(name="baseline"),)
    reference: str | None = "baseline"
    #: (variant B, variant A) pairs: B - A per source bin and pooled, with Newcombe's paired
    #: interval (the variants score the very same injections), e.g. the team's D05 headline
    #: Poisson + clip 20 against clip 20 alone.
    comparisons: tuple[tuple[str, str], ...] = ()


@register_check("bright_arc", BrightArcParams)
def bright_arc(ctx: Context, params: BrightArcParams, out: Path) -> Outcome:
    """Bright-arc test: detection per 1-mag source bin at theta_E 1.5", per variant, on the same hosts."""
    frame = score_variants(ctx, params, params.variants)
    frame.to_parquet(out / "injections.parquet", index=False)
    thresholds = fixed_thresholds(params.thresholds)
    table = counts(frame, ["variant", "mag_bin"], thresholds)
    table.to_csv(out / "detection.csv", index=False)
    overall = pooled(table, ["variant"])
    overall.to_csv(out / "detection_pooled.csv", index=False)
    metrics: dict[str, Any] = {"hosts": int(frame["host_row"].nunique()), "theta_e": params.theta_e}
    for _, r in table.iterrows():
        metrics[f"{r.variant}.{r.mag_bin}.{r.threshold}"] = _fraction(r)
    for _, r in overall.iterrows():
        metrics[f"{r.variant}.all.{r.threshold}"] = _fraction(r)
    snr = frame.groupby(["variant", "mag_bin"])["arc_snr_r"].median()
    for (variant, mag_bin), value in zip(snr.index.tolist(), snr.to_numpy(), strict=True):
        metrics[f"{variant}.{mag_bin}.median_arc_snr_r"] = float(value)
    headline = []
    if params.reference is not None and len(params.variants) > 1:
        comparison = compare_to_reference(frame, params.reference, thresholds)
        comparison.to_csv(out / "vs_reference.csv", index=False)
        for _, r in comparison.iterrows():
            metrics[f"{r.variant}.vs_{params.reference}.max_abs_dp"] = float(r.max_abs_dp)
            metrics[f"{r.variant}.vs_{params.reference}.{r.threshold}.identical"] = bool(r.identical)
        for variant, rows in comparison.groupby("variant", sort=False):
            same = "identical detections" if rows["identical"].all() else "detections differ"
            pairs = zip(rows.threshold, rows.k, rows.k_reference, strict=True)
            detail = ", ".join(f"{t}: {int(k)} vs {int(kr)}" for t, k, kr in pairs)
            worst = rows["max_abs_dp"].iloc[0]
            headline.append(f"{variant!s} vs {params.reference}: max |dp| {worst:.3g}, {same} ({detail})")
    for b, a in params.comparisons:
        paired = paired_variants(frame, b, a, thresholds)
        paired.to_csv(out / f"{b}_vs_{a}.csv", index=False)
        for _, r in paired.iterrows():
            metrics[f"{b}.vs_{a}.{r.mag_bin}.{r.threshold}"] = {
                "k_b": int(r.k_b), "k_a": int(r.k_a), "n": int(r.n_a), "difference": float(r.difference),
                "newcombe95_paired": [float(r.newcombe95_low), float(r.newcombe95_high)],
            }  # fmt: skip
        at = paired[paired["threshold"] == "p>=0.3"]
        headline.append(
            f"{b} - {a} at p >= 0.3 per source bin (paired Newcombe 95%): "
            + "; ".join(
                f"r {r.mag_bin}: {r.difference:+.1%} [{r.newcombe95_low:+.1%}, {r.newcombe95_high:+.1%}]"
                for r in at.itertuples()
            )
        )
    peaks = []
    best = table[table["threshold"] == "p>=0.5"]
    for variant, rows in best.groupby("variant", sort=False):
        top: Any = rows.iloc[int(np.nanargmax(rows["completeness"].to_numpy(float)))]
        peak = f"{top.completeness:.1%} ({int(top.k)}/{int(top.n)}) in r {top.mag_bin}"
        peaks.append(f"{variant!s}: detection at p >= 0.5 peaks at {peak}")
    headline = peaks + headline
    figure = _plot(table, params, out / "bright_arc.png")
    wide = table[table["threshold"] == "p>=0.5"].pivot(
        index="mag_bin", columns="variant", values="completeness"
    )
    return Outcome(
        metrics,
        headline,
        wide.reset_index(),
        [figure],
        caption=bright_arc_caption(frame, params, params.variants),
    )


def paired_variants(frame: pd.DataFrame, b: str, a: str, thresholds: dict[str, float]) -> pd.DataFrame:
    """B - A per source bin and over all bins ("all"), from the same injections scored under
    both variants: the paired 2x2 counts and Newcombe's paired 95% interval."""
    names = set(frame["variant"])
    for name in (a, b):
        if name not in names:
            raise DiagnosticError(f"bright_arc: comparisons name variant {name!r}, not among {sorted(names)}")
    keys = ["mag_bin", "index"]
    pairs = frame.loc[frame["variant"] == a, [*keys, "probability"]].merge(
        frame.loc[frame["variant"] == b, [*keys, "probability"]], on=keys, suffixes=("_a", "_b")
    )
    per_bin = paired_counts(pairs, ["mag_bin"], thresholds, thresholds, list(thresholds))
    overall = paired_marginal(per_bin, [])
    overall.insert(0, "mag_bin", "all")
    return pd.concat([per_bin, overall], ignore_index=True)


def bright_arc_caption(frame: pd.DataFrame, setup: BrightArcSetup, variants: tuple[Variant, ...]) -> str:
    """What a bright-arc run did, from what it scored."""
    bins = frame["mag_bin"].nunique()
    described = []
    for v in variants:
        parts = []
        if v.poisson_gain is not None:
            parts.append(f"Poisson gain {v.poisson_gain:g} e-/nmgy")
        if v.clip_range is not None:
            parts.append(f"clip {v.clip_range:g}")
        if v.beta_frac_range is not None:
            parts.append(f"beta_frac {v.beta_frac_range[0]:g}-{v.beta_frac_range[1]:g}")
        described.append(f"{v.name}" + (f" ({', '.join(parts)})" if parts else ""))
    lo, hi = setup.beta_frac_range
    mags = f"r {setup.mag_bins[0]:g}-{setup.mag_bins[-1]:g}"
    return (
        f'{frame["host_row"].nunique()} hosts x {bins} source bins ({mags}) at theta_E {setup.theta_e:g}", '
        f"prior {setup.prior}, beta_frac {lo:g}-{hi:g}, seed {setup.seed}; {len(frame)} scored; "
        f"variants: {'; '.join(described)}"
    )


def score_variants(ctx: Context, setup: BrightArcSetup, variants: tuple[Variant, ...]) -> pd.DataFrame:
    """One row per (variant, bin, host): truth, logit, probability. Variants sharing the
    rendering (same noise and beta_frac) share the injected images."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise DiagnosticError(f"bright_arc: variant names repeat: {names}")
    if len(setup.mag_bins) < 2 or any(b <= a for a, b in itertools.pairwise(setup.mag_bins)):
        raise DiagnosticError(f"bright_arc: mag_bins must be increasing edges, got {setup.mag_bins}")
    rows = host_rows(
        ctx, n=setup.n_hosts, seed=setup.seed, injection_model=setup.injection_model, split=setup.split
    )
    prior = get_prior(setup.prior)
    frames = []
    bins = list(itertools.pairwise(setup.mag_bins))
    with progress_bar(
        len(bins) * len(variants), "bright arcs (bin x variant)", enabled=ctx.progress
    ) as advance:
        for lo, hi in bins:
            rendered: dict[tuple[Any, ...], InjectResult] = {}
            for variant in variants:
                beta = variant.beta_frac_range or setup.beta_frac_range
                key = (variant.poisson_gain, tuple(beta))
                if key not in rendered:
                    drawn = prior.with_overrides(
                        {"source_params": {"r_mag_range": [lo, hi], "beta_frac_range": list(beta)}},
                        source=f"bright_arc bin {lo:g}-{hi:g}",
                    )
                    rendered[key] = inject_rows(
                        ctx,
                        rows,
                        prior=drawn,
                        theta_e=setup.theta_e,
                        seed=setup.seed,
                        name=f"bright_arc_{lo:g}-{hi:g}",
                        poisson_gain=variant.poisson_gain,
                    )
                result = rendered[key]
                override = (
                    None if variant.clip_range is None else PreprocessOverride(clip_range=variant.clip_range)
                )
                scored = score_images(ctx, result.images, override=override)
                frame = result.truth.copy()
                frame.insert(0, "variant", variant.name)
                frame.insert(1, "mag_bin", f"{lo:g}-{hi:g}")
                frame.insert(2, "index", np.arange(len(rows)))
                frame.insert(3, "host_row", rows)
                frame["logit"], frame["probability"] = scored.logits, scored.probabilities
                frames.append(frame)
                advance(1)
    return pd.concat(frames, ignore_index=True)


def compare_to_reference(frame: pd.DataFrame, reference: str, thresholds: dict[str, float]) -> pd.DataFrame:
    """Per other variant and threshold: max |dp| over matched injections (same bin and
    index), detections k of the variant and the reference, and whether the very same
    injections are detected."""
    if reference not in set(frame["variant"]):
        raise DiagnosticError(
            f"bright_arc: reference variant {reference!r} is not among {sorted(set(frame.variant))}"
        )
    keys = ["mag_bin", "index"]
    base = frame[frame["variant"] == reference].set_index(keys)["probability"]
    rows = []
    for variant, part in frame[frame["variant"] != reference].groupby("variant", sort=False):
        p = part.set_index(keys)["probability"]
        q = base.loc[p.index]
        for label, value in thresholds.items():
            detected, detected_ref = p >= value, q >= value
            rows.append(
                {
                    "variant": variant,
                    "threshold": label,
                    "k": int(detected.sum()),
                    "k_reference": int(detected_ref.sum()),
                    "n": int(p.size),
                    "identical": bool((detected.to_numpy() == detected_ref.to_numpy()).all()),
                    "max_abs_dp": float(np.max(np.abs(p.to_numpy() - q.to_numpy()))),
                }
            )
    return pd.DataFrame(rows)


def _fraction(row: pd.Series) -> dict[str, Any]:
    return {
        "k": int(row.k),
        "n": int(row.n),
        "fraction": None if row.no_data else float(row.completeness),
        "jeffreys68": [float(row.jeffreys68_low), float(row.jeffreys68_high)],
    }


def _plot(table: pd.DataFrame, setup: BrightArcSetup, path: Path) -> Path:
    """Fraction detected against source magnitude, one panel per threshold (titled in the
    threshold's colour), one line per variant, Jeffreys 68% bars, n per bin in the title."""
    plt = pyplot()
    labels = list(dict.fromkeys(table["threshold"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(4.4 * len(labels), 4.0), squeeze=False, sharey=True)
    per_bin = int(table["n"].max()) if len(table) else 0
    for ax, label in zip(axes[0], labels, strict=True):
        for variant, rows in table[table["threshold"] == label].groupby("variant", sort=False):
            centres = np.array([np.mean([float(v) for v in b.split("-")]) for b in rows["mag_bin"]])
            y = rows["completeness"].to_numpy(float)
            err = np.vstack([y - rows["jeffreys68_low"], rows["jeffreys68_high"] - y])
            ax.errorbar(centres, y, yerr=err, marker="o", ms=3, capsize=2, label=str(variant))
        ax.set_title(f"detected at {label}", color=threshold_colour(str(label)))
        ax.set_xlabel("unlensed source magnitude, r band (AB mag)")
        ax.set_ylim(-0.02, 1.05)
    axes[0][0].set_ylabel("fraction detected (Jeffreys 68%)")
    axes[0][-1].legend(title="variant", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"bright arcs at θ_E = {setup.theta_e:g} arcsec: n = {per_bin} injections per magnitude bin")
    fig.tight_layout()
    return save_figure(fig, path)
