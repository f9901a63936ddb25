"""Write tests/data/pinned_streams.json: outputs of every keyed random stream and of one
injection truth table, recorded before the layout step moved the code, so the move is
proven byte-identical (tests/test_pinned_streams.py recomputes them).

Run from the repository root: python -m tests.make_pins
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.pinned import compute_pins

if __name__ == "__main__":
    out = Path(__file__).parent / "data" / "pinned_streams.json"
    out.write_text(json.dumps(compute_pins(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
