"""Regenerate tests/data/golden_arcs.npz with lenstronomy (run by hand; the file is committed
so CI checks the renderer against lenstronomy's output without installing it).

    .venv/bin/python -m tests.make_golden
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lenscal.physics import RenderSpec

from .lenstronomy_reference import lenstronomy_arcs, random_params

GOLDEN = Path(__file__).parent / "data" / "golden_arcs.npz"
GOLDEN_SPEC = RenderSpec(size=64, oversample=4, dtype="float64")


def main() -> None:
    params = random_params(4, seed=2024)
    arcs = lenstronomy_arcs(params, GOLDEN_SPEC)
    np.savez_compressed(
        GOLDEN,
        arcs=arcs.astype(np.float32),
        params=json.dumps(params.records()),
        spec=GOLDEN_SPEC.model_dump_json(),
    )
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} B)")


if __name__ == "__main__":
    main()
