"""Generate the Python gRPC code for every .proto under proto/ into shared/.

Generated modules land beside the library (``shared/lenscal/scorer/v1/scorer_pb2.py``)
because protoc's imports follow the proto package path (``lenscal.scorer.v1``). They are
git-ignored: `make proto` and the setuptools build both call this one script.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "shared"


def generate() -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc  # build-time dependency only

    protos = sorted(PROTO_DIR.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_DIR}")
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={OUT_DIR}",
        f"--pyi_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        *[str(p.relative_to(PROTO_DIR)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed: " + " ".join(args))
    return protos


if __name__ == "__main__":
    done = generate()
    print(f"generated Python code for {len(done)} proto file(s) into {OUT_DIR}", file=sys.stderr)
