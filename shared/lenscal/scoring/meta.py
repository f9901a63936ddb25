"""A stacked meta-learner over several finders' scores (Paper IV's ensemble), as data. Two
stackers (``STACKERS``):

- ``paperIV`` (the team's scripts/meta_learner.py, after Coscrato et al. 2020): an MLP
  ``Linear(M, 300) -> ReLU -> Linear(300, 1)`` on the members' probabilities (their
  "score"), p = sigmoid(w2 . relu(W1 x + b1) + b2);
- ``logistic``: logistic regression on each member's logit, clipped to +-``LOGIT_CLIP`` (a
  saturated float32 sigmoid carries no more information) and standardised with the mean
  and standard deviation it had on the fitting split, p = sigmoid(intercept + coef . x).

Applied here in numpy (no torch: the survey scorer runs it). Stored as JSON (``meta.json``,
no pickle), with each member's model_id and weights SHA-256, so it is only ever applied to
the scores of the very models it was fitted on. Fitting and reporting:
``lenscal.evaluation.meta``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_write_text
from lenscal.scoring.api import ModelInfo, sigmoid

META_FORMAT = "lenscal-meta/1"
LOGIT_CLIP = 20.0
STACKERS = {
    "paperIV": "MLP Linear(M, 300) -> ReLU -> Linear(300, 1) on the members' probabilities (Paper IV)",
    "logistic": "logistic regression on standardised clipped logits",
}


@dataclass(frozen=True)
class Member:
    name: str  # the model's name on the scorer (registry run id)
    model_id: str
    weights_sha256: str
    preprocess: str  # the PreprocessSpec JSON the member's scores were made with
    mean: float  # of the clipped logit on the fitting split
    std: float


def stacker_features(
    stacker: str, members: Sequence[Member], logits: Mapping[str, np.ndarray], who: str = ""
) -> np.ndarray:
    """A stacker's input, one column per member: probabilities (paperIV) or the logits
    clipped to +-LOGIT_CLIP and standardised by the member's fitting-split mean and std
    (logistic)."""
    missing = [m.name for m in members if m.name not in logits]
    if missing:
        raise LenscalError(f"meta-learner {who}: no scores from member(s) {missing}")
    if stacker == "paperIV":
        return np.stack([sigmoid(np.asarray(logits[m.name])) for m in members], axis=1)
    columns = [
        (np.clip(np.asarray(logits[m.name], np.float64), -LOGIT_CLIP, LOGIT_CLIP) - m.mean) / m.std
        for m in members
    ]
    return np.stack(columns, axis=1)


@dataclass(frozen=True)
class Mlp:
    """The paperIV stacker's weights: w1 (H, M), b1 (H,), w2 (H,), b2."""

    w1: tuple[tuple[float, ...], ...]
    b1: tuple[float, ...]
    w2: tuple[float, ...]
    b2: float

    def forward(self, x: np.ndarray) -> np.ndarray:
        hidden = np.maximum(x @ np.asarray(self.w1).T + np.asarray(self.b1), 0.0)
        return hidden @ np.asarray(self.w2) + self.b2

    def to_json(self) -> dict[str, Any]:
        return {"w1": [list(r) for r in self.w1], "b1": list(self.b1), "w2": list(self.w2), "b2": self.b2}


@dataclass(frozen=True)
class MetaLearner:
    name: str
    members: tuple[Member, ...]
    coef: tuple[float, ...] = ()
    intercept: float = 0.0
    mlp: Mlp | None = None  # set: the paperIV stacker; None: logistic

    @property
    def stacker(self) -> str:
        return "paperIV" if self.mlp is not None else "logistic"

    def features(self, logits: Mapping[str, np.ndarray]) -> np.ndarray:
        """The stacker's input (stacker_features)."""
        return stacker_features(self.stacker, self.members, logits, who=self.name)

    def predict_proba(self, logits: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities from each member's logits (name -> (N,) array)."""
        x = self.features(logits)
        if self.mlp is not None:
            return sigmoid(self.mlp.forward(x))
        return sigmoid(x @ np.asarray(self.coef) + self.intercept)

    def check_members(self, infos: Sequence[ModelInfo]) -> None:
        """Refuse scores from models other than the ones fitted on (same name, other weights or
        preprocessing)."""
        by_name = {i.name: i for i in infos}
        for m in self.members:
            info = by_name.get(m.name)
            if info is None:
                raise LenscalError(f"meta-learner {self.name}: member {m.name} is not among the models")
            if info.weights_sha256 != m.weights_sha256 or info.spec.to_json() != m.preprocess:
                raise LenscalError(
                    f"meta-learner {self.name}: {m.name} has other weights or preprocessing than it"
                    f" was fitted on (weights {info.weights_sha256[:12]} vs {m.weights_sha256[:12]});"
                    " refit it"
                )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": META_FORMAT,
            "name": self.name,
            "stacker": self.stacker,
            "model": STACKERS[self.stacker],
            "members": [m.__dict__ for m in self.members],
        }
        if self.mlp is not None:
            out["mlp"] = self.mlp.to_json()
        else:
            out.update(logit_clip=LOGIT_CLIP, coef=list(self.coef), intercept=self.intercept)
        return out

    def save(self, path: str | Path) -> Path:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")
        return Path(path)


def load_meta(path: str | Path) -> MetaLearner:
    """A meta-learner from its meta.json (a file, or a directory holding one)."""
    file = Path(path)
    if file.is_dir():
        file = file / "meta.json"
    try:
        raw = json.loads(file.read_text())
        if raw.get("format") != META_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {META_FORMAT}")
        members = tuple(Member(**m) for m in raw["members"])
        stacker = raw.get("stacker", "logistic")
        if stacker not in STACKERS:
            raise ValueError(f"unknown stacker {stacker!r}; known: {sorted(STACKERS)}")
        if stacker == "paperIV":
            w = raw["mlp"]
            mlp = Mlp(
                tuple(tuple(float(v) for v in row) for row in w["w1"]),
                tuple(float(v) for v in w["b1"]),
                tuple(float(v) for v in w["w2"]),
                float(w["b2"]),
            )
            sizes = {len(mlp.b1), len(mlp.w2), len(mlp.w1)}
            if len(sizes) != 1 or any(len(row) != len(members) for row in mlp.w1):
                raise ValueError("MLP weights do not fit the members")
            return MetaLearner(str(raw["name"]), members, mlp=mlp)
        coef = tuple(float(c) for c in raw["coef"])
        if len(coef) != len(members) or any(m.std <= 0 for m in members):
            raise ValueError("coefficients and members disagree, or a zero spread")
        return MetaLearner(str(raw["name"]), members, coef, float(raw["intercept"]))
    except FileNotFoundError:
        raise LenscalError(f"{file}: no meta-learner here (fit one with `lenscal meta fit`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LenscalError(f"{file}: not a valid meta-learner ({exc})") from None
