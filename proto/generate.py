"""Generate the Python gRPC code for every .proto under proto/ into shared/lenscal_pb/.

The .proto files keep their package paths (``proto/lenscal/scorer/v1/scorer.proto``,
``package lenscal.scorer.v1``), so every client built from the protos alone and every
service name on the wire stays as it is. protoc names Python modules after those paths
(``lenscal.scorer.v1.scorer_pb2``), which would put generated code inside the library's
own ``lenscal`` package; instead the code is generated into a scratch directory and moved
under the separate top-level package ``lenscal_pb``, with protoc's absolute imports of
sibling protos (``from lenscal.common.v1 import arrays_pb2``) pointed there. Generated
files are git-ignored: `make proto` and the setuptools build both call this one script.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PACKAGE = "lenscal_pb"
OUT_DIR = ROOT / "shared" / OUT_PACKAGE
PROTO_ROOT_PACKAGE = "lenscal"  # the first path component of every .proto file
# protoc writes imports of generated modules in exactly these two forms.
IMPORT = re.compile(rf"^(from|import) {PROTO_ROOT_PACKAGE}(\.[\w.]+)", re.MULTILINE)


def generate() -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc  # build-time dependency only

    protos = sorted(PROTO_DIR.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_DIR}")
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={scratch}",
            f"--pyi_out={scratch}",
            f"--grpc_python_out={scratch}",
            *[str(p.relative_to(PROTO_DIR)) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed: " + " ".join(args))
        generated = Path(scratch) / PROTO_ROOT_PACKAGE
        for source in generated.rglob("*_pb2*.py*"):
            target = OUT_DIR / source.relative_to(generated)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = IMPORT.sub(rf"\1 {OUT_PACKAGE}\2", source.read_text())
            target.write_text(text)
    for directory in [OUT_DIR, *(p for p in OUT_DIR.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()  # tracked in git, so packaging finds them
    return protos


def clean() -> None:
    for path in OUT_DIR.rglob("*_pb2*.py*"):
        path.unlink()
    shutil.rmtree(OUT_DIR / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    done = generate()
    print(f"generated Python code for {len(done)} proto file(s) into {OUT_DIR}", file=sys.stderr)
