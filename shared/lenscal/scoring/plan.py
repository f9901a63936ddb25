"""Capacity planning for survey scoring: the expected wall time for N cutouts and the stage
that sets it, from rates the benchmarks measured (``bench/survey.py`` on a CPU machine,
``bench/gpu.py`` on a GPU; each writes a rates file).

A rates file (JSON): ``{"device": ..., "source": ..., "stages": {stage: {"cutouts_per_s":
r, "per": unit}}}`` with stages

- ``read``: shard reading, per reader process (``per: "process"``);
- ``wire``: gRPC transport into one scorer replica, float16 (``per: "replica"``);
- ``preprocess`` and ``model``: on one device (``per: "gpu"``, or ``"cpu"`` for a CPU
  run); they share the device, so its time per cutout is the sum of theirs.

With G devices (one replica each) and R readers the stages run concurrently, so the wall
time is N / min(R x read, G x wire, G / (1/preprocess + 1/model)). A stage missing from the
file is reported as not measured and left out, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenscal.errors import LenscalError

STAGES = ("read", "wire", "preprocess", "model")


@dataclass(frozen=True)
class StageTime:
    stage: str
    rate: float | None  # cutouts/s for the whole deployment (None: not measured)
    seconds: float | None


@dataclass(frozen=True)
class Plan:
    n: int
    gpus: int
    readers: int
    stages: tuple[StageTime, ...]
    wall_s: float
    bottleneck: str
    device: str
    source: str

    def lines(self) -> list[str]:
        out = [
            f"{self.n:,} cutouts on {self.gpus} device(s) ({self.device}), {self.readers} reader process(es);"
            f" rates from {self.source}",
        ]
        for s in self.stages:
            if s.rate is None:
                out.append(f"  {s.stage:<10} not measured (left out)")
            else:
                out.append(f"  {s.stage:<10} {s.rate:>12,.0f} cutouts/s  {_duration(s.seconds or 0.0):>10}")
        out.append(f"expected wall time {_duration(self.wall_s)}; bottleneck: {self.bottleneck}")
        return out


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def read_rates(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise LenscalError(
            f"{file}: no rates file; run `python bench/survey.py` (CPU) or `make bench-gpu` (GPU) to"
            " measure one"
        )
    try:
        raw = json.loads(file.read_text())
        stages = raw["stages"]
        for name, stage in stages.items():
            if name not in STAGES:
                raise ValueError(f"unknown stage {name!r}; stages are {list(STAGES)}")
            if not float(stage["cutouts_per_s"]) > 0:
                raise ValueError(f"{name}: cutouts_per_s must be positive")
    except (ValueError, KeyError, TypeError) as exc:
        raise LenscalError(f"{file}: not a rates file ({exc})") from None
    return dict(raw)


def plan(n: int, rates: dict[str, Any], *, gpus: int = 1, readers: int | None = None) -> Plan:
    if n <= 0 or gpus <= 0:
        raise LenscalError("plan: --n and --gpus must be positive")
    readers = readers if readers is not None else 4 * gpus
    if readers <= 0:
        raise LenscalError("plan: --readers must be positive")
    measured = {k: float(v["cutouts_per_s"]) for k, v in rates["stages"].items()}
    scale = {"read": readers, "wire": gpus, "preprocess": gpus, "model": gpus}
    stages = tuple(
        StageTime(s, measured[s] * scale[s], n / (measured[s] * scale[s]))
        if s in measured
        else StageTime(s, None, None)
        for s in STAGES
    )
    # preprocess and model share each device: their times add
    device_s = sum(s.seconds for s in stages if s.stage in ("preprocess", "model") and s.seconds)
    candidates = {s.stage: s.seconds for s in stages if s.stage in ("read", "wire") and s.seconds}
    if device_s:
        candidates["device"] = device_s
    if not candidates:
        raise LenscalError("plan: the rates file measures no stage")
    bottleneck = max(candidates, key=lambda k: candidates[k])
    if bottleneck == "device":
        parts = {s.stage: s.seconds for s in stages if s.stage in ("preprocess", "model") and s.seconds}
        bottleneck = "device: " + " + ".join(
            f"{k} {100 * v / device_s:.0f}%" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])
        )
    return Plan(
        n,
        gpus,
        readers,
        stages,
        max(candidates.values()),
        bottleneck,
        str(rates.get("device", "unknown device")),
        str(rates.get("source", "unknown source")),
    )
