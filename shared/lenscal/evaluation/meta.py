"""Paper IV's ensemble: fit a stacked meta-learner (``lenscal.scoring.meta``) on one split's
scores of two (or more) finders, report it on another with the E04-eval metrics, and say
where it beats a finder alone and where it does not.

Stackers (``FITS``): ``paperIV``, the team's plan (scripts/meta_learner.py): an MLP
2 -> 300 -> 1 on the finders' probabilities, fitted on the *train* split's predictions
(Adam, lr 1e-3, weight decay 1e-4, 100 epochs, batches of 512, BCE, seed 42) and evaluated on
*val*, with each model's AUC bootstrapped on its own (10,000 resamples, seed 42: the team's
unpaired intervals); ``logistic``, lenscal's (fitted on val, reported on test). A fitting
split equal to, or sharing cutouts with, the test split is refused.

"Beats" is a guarded claim: the paired bootstrap of the test AUC difference (meta minus
finder, the same resampled rows for both) must have its 95% interval above zero. A member
that adds nothing (say, a noisy copy of the other) leaves the interval straddling zero, and
the report says so instead of crowning the ensemble."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenscal.data.manifest import tier_codes
from lenscal.data.shards import ShardReader
from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_write_text
from lenscal.plotting import pyplot, save_figure
from lenscal.scoring.api import ModelInfo, Scorer, sigmoid
from lenscal.scoring.meta import LOGIT_CLIP, STACKERS, Member, MetaLearner, Mlp, stacker_features
from lenscal.scoring.rows import score_rows
from lenscal.stats.metrics import roc_auc, roc_curve
from lenscal.stats.summary import classifier_summary


@dataclass
class MetaResult:
    meta: MetaLearner
    out_dir: Path
    metrics: dict[str, Any]


def _members(
    name: str, logits: Mapping[str, np.ndarray], labels: np.ndarray, infos: Sequence[ModelInfo]
) -> tuple[np.ndarray, list[Member]]:
    y = np.asarray(labels).astype(bool)
    if y.all() or not y.any():
        raise LenscalError(f"meta-learner {name}: the fitting split needs both lenses and non-lenses")
    members = []
    for info in infos:
        z = np.clip(np.asarray(logits[info.name], np.float64), -LOGIT_CLIP, LOGIT_CLIP)
        std = float(z.std())
        if not std > 0:
            raise LenscalError(f"{info.name}: every fitting score is the same; nothing to learn from")
        members.append(
            Member(info.name, info.model_id, info.weights_sha256, info.spec.to_json(), float(z.mean()), std)
        )
    return y, members


def fit_logistic(
    name: str,
    logits: Mapping[str, np.ndarray],
    labels: np.ndarray,
    infos: Sequence[ModelInfo],
    c: float = 1.0,
    **_: Any,
) -> MetaLearner:
    """Logistic regression (L2, inverse strength ``c``) on the members' standardised clipped
    logits; ``infos`` in member order (their names key ``logits``)."""
    from sklearn.linear_model import LogisticRegression

    y, members = _members(name, logits, labels, infos)
    x = stacker_features("logistic", members, logits, who=name)
    model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    return MetaLearner(
        name, tuple(members), tuple(float(v) for v in model.coef_[0]), float(model.intercept_[0])
    )


#: The team's meta_learner.py training settings.
PAPER_IV = {"hidden": 300, "epochs": 100, "lr": 1e-3, "batch_size": 512, "weight_decay": 1e-4, "seed": 42}


def fit_paper_iv(
    name: str,
    logits: Mapping[str, np.ndarray],
    labels: np.ndarray,
    infos: Sequence[ModelInfo],
    **_: Any,
) -> MetaLearner:
    """Paper IV's MLP (Linear(M, 300), ReLU, Linear(300, 1)) on the members' probabilities,
    trained as the team's train_meta_learner: Adam, BCE with logits, shuffled batches, seed."""
    import torch

    y, members = _members(name, logits, labels, infos)
    settings = PAPER_IV
    x = torch.from_numpy(stacker_features("paperIV", members, logits, who=name).astype(np.float32))
    target = torch.from_numpy(y.astype(np.float32)).unsqueeze(1)
    generator = torch.Generator().manual_seed(int(settings["seed"]))
    torch.manual_seed(int(settings["seed"]))
    net = torch.nn.Sequential(
        torch.nn.Linear(len(members), int(settings["hidden"])),
        torch.nn.ReLU(),
        torch.nn.Linear(int(settings["hidden"]), 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batch = int(settings["batch_size"])
    for _epoch in range(int(settings["epochs"])):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            pick = order[start : start + batch]
            opt.zero_grad()
            loss_fn(net(x[pick]), target[pick]).backward()
            opt.step()
    first, second = net[0], net[2]
    assert isinstance(first, torch.nn.Linear) and isinstance(second, torch.nn.Linear)
    mlp = Mlp(
        tuple(tuple(float(v) for v in row) for row in first.weight.detach().double().tolist()),
        tuple(float(v) for v in first.bias.detach().double().tolist()),
        tuple(float(v) for v in second.weight.detach().double()[0].tolist()),
        float(second.bias.detach().double()[0]),
    )
    return MetaLearner(name, tuple(members), mlp=mlp)


#: Stacker name -> fitting function (see the module docstring).
FITS = {"paperIV": fit_paper_iv, "logistic": fit_logistic}
#: Stacker name -> (fitting split, test split) by default.
DEFAULT_SPLITS = {"paperIV": ("train", "val"), "logistic": ("val", "test")}


def fit_meta(
    name: str,
    logits: Mapping[str, np.ndarray],
    labels: np.ndarray,
    infos: Sequence[ModelInfo],
    c: float = 1.0,
    stacker: str = "logistic",
) -> MetaLearner:
    if stacker not in FITS:
        raise LenscalError(f"unknown stacker {stacker!r}; known: {', '.join(FITS)}")
    return FITS[stacker](name, logits, labels, infos, c=c)


def bootstrap_auc(p: np.ndarray, y: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """One model's AUC bootstrapped on its own (the team's bootstrap_auc: resamples with
    both classes kept; mean, std, 68% and 95% percentile intervals)."""
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(resamples):
        pick = rng.integers(0, y.size, y.size)
        if y[pick].all() or not y[pick].any():
            continue
        aucs.append(roc_auc(p[pick], y[pick]))
    a = np.asarray(aucs)
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "ci68": [float(np.quantile(a, 0.16)), float(np.quantile(a, 0.84))],
        "ci95": [float(np.quantile(a, 0.025)), float(np.quantile(a, 0.975))],
        "n_valid": int(a.size),
        "resamples": resamples,
        "seed": seed,
    }


def compare(
    meta: MetaLearner,
    logits: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Test AUC of the meta-learner and of each member, and the paired-bootstrap 95% interval
    of each difference; ``beats`` only when the whole interval is above zero."""
    y = np.asarray(labels).astype(bool)
    p_meta = meta.predict_proba(logits)
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, y.size, y.size) for _ in range(bootstrap)]
    samples = [s for s in samples if y[s].any() and not y[s].all()]
    out: dict[str, Any] = {"auc_meta": roc_auc(p_meta, y), "members": {}}
    for m in meta.members:
        z = np.asarray(logits[m.name], np.float64)
        deltas = np.asarray([roc_auc(p_meta[s], y[s]) - roc_auc(z[s], y[s]) for s in samples])
        low, high = (float(v) for v in np.quantile(deltas, [0.025, 0.975]))
        auc = roc_auc(z, y)
        out["members"][m.name] = {
            "auc": auc,
            "delta_auc": out["auc_meta"] - auc,
            "delta_auc_95": [low, high],
            "beats": bool(low > 0),
        }
    return out


def _score_split(
    scorer: Scorer, reader: ShardReader, rows: np.ndarray, names: Sequence[str], label: str
) -> dict[str, np.ndarray]:
    return {n: score_rows(scorer, reader, rows, model=n, label=f"{label} {n}").logits for n in names}


def run_meta(
    scorer: Scorer,
    reader: ShardReader,
    out_dir: str | Path,
    *,
    name: str,
    models: Sequence[str],
    stacker: str = "paperIV",
    fit_split: str | None = None,
    test_split: str | None = None,
    bootstrap: int = 10_000,
    seed: int = 42,
    c: float = 1.0,
) -> MetaResult:
    """Score the fitting and test splits with each of ``models`` (names on ``scorer``), fit
    the stacker on the first, report on the second: meta.json, metrics.json (E04-eval metrics
    of the ensemble on test, each model's own bootstrap AUC interval, the paired comparison),
    roc.png. Splits default by stacker (``DEFAULT_SPLITS``)."""
    if stacker not in FITS:
        raise LenscalError(f"unknown stacker {stacker!r}; known: {', '.join(FITS)}")
    if len(models) < 2:
        raise LenscalError("an ensemble needs at least two models (--model A --model B)")
    fit_split = fit_split or DEFAULT_SPLITS[stacker][0]
    test_split = test_split or DEFAULT_SPLITS[stacker][1]
    if fit_split == test_split:
        raise LenscalError(
            f"the fitting split {fit_split!r} equals the test split {test_split!r}: the meta-learner would "
            "be judged on the cutouts it was fitted on; give two different splits"
        )
    table = reader.manifest()
    for column in ("split", "label"):
        if column not in table.columns:
            raise LenscalError(f"{reader.directory}: the manifest has no {column!r} column")
    splits = table["split"].to_numpy()
    fit_rows, test_rows = np.flatnonzero(splits == fit_split), np.flatnonzero(splits == test_split)
    for split, rows in ((fit_split, fit_rows), (test_split, test_rows)):
        if rows.size == 0:
            raise LenscalError(f"{reader.directory}: no rows with split == {split!r}")
    ids = table["galaxy_id"].astype(str).to_numpy()
    shared = np.intersect1d(ids[fit_rows], ids[test_rows])
    if shared.size:
        raise LenscalError(
            f"the fitting split {fit_split!r} and the test split {test_split!r} share {shared.size} cutouts "
            f"(galaxy_id {', '.join(shared[:3])}{', ...' if shared.size > 3 else ''}); they must not overlap"
        )
    infos = [scorer.model_info(m)[0] for m in models]
    names = [i.name for i in infos]
    labels = table["label"].to_numpy().astype(bool)
    fit_logits = _score_split(scorer, reader, fit_rows, names, fit_split)
    meta = fit_meta(name, fit_logits, labels[fit_rows], infos, c=c, stacker=stacker)
    test_logits = _score_split(scorer, reader, test_rows, names, test_split)
    y = labels[test_rows]
    tiers = tier_codes(table["tier"] if "tier" in table.columns else None, len(table))[test_rows]
    p_meta = meta.predict_proba(test_logits)
    metrics = classifier_summary(p_meta, y, tiers, bootstrap=bootstrap, seed=seed)
    scores = {**{n: sigmoid(test_logits[n]) for n in names}, name: p_meta}
    metrics.update(
        {
            "model": name,
            "stacker": stacker,
            "stacker_model": STACKERS[stacker],
            "training": PAPER_IV if stacker == "paperIV" else {"c": c},
            "fit_split": fit_split,
            "test_split": test_split,
            "n_fit": int(fit_rows.size),
            "n_test": int(test_rows.size),
            "auc_bootstrap": {n: bootstrap_auc(p, y, bootstrap, seed) for n, p in scores.items()},
            "auc_bootstrap_method": f"each model resampled on its own ({bootstrap:,} resamples, seed "
            f"{seed}), percentile intervals, as the team's meta_learner.py",
            "comparison": compare(meta, test_logits, y, bootstrap=bootstrap, seed=seed),
            "member_metrics": {n: classifier_summary(sigmoid(test_logits[n]), y, tiers) for n in names},
            "shards": str(reader.directory),
        }
    )
    if meta.mlp is None:
        metrics.update(coef=dict(zip(names, meta.coef, strict=True)), intercept=meta.intercept)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta.save(out / "meta.json")
    _roc_plot(scores, y, out / "roc.png", f"{name} ({stacker}) on {test_split}, fitted on {fit_split}")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    return MetaResult(meta, out, metrics)


def _roc_plot(scores: Mapping[str, np.ndarray], y: np.ndarray, path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for label, p in scores.items():
        fpr, tpr, _ = roc_curve(p, y)
        ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc(p, y):.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set_xlabel("false-positive rate (test)")
    ax.set_ylabel("recall (test)")
    ax.legend(loc="lower right")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
