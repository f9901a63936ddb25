"""Generated gRPC code: produced from proto/ at build time, importable, never committed."""

from __future__ import annotations

import subprocess

from .conftest import REPO


def test_generated_modules_import_with_the_design_names() -> None:
    from lenscal_pb.injector.v1 import injector_pb2, injector_pb2_grpc
    from lenscal_pb.scorer.v1 import scorer_pb2, scorer_pb2_grpc

    assert scorer_pb2.DESCRIPTOR.package == "lenscal.scorer.v1"
    assert set(scorer_pb2.DESCRIPTOR.services_by_name["Scorer"].methods_by_name) == {
        "Score",
        "ScoreStream",
        "GetModelInfo",
    }
    batch = scorer_pb2.ScoreRequest.DESCRIPTOR.fields_by_name["batch"].message_type.fields_by_name["data"]
    assert batch.type == batch.TYPE_BYTES  # one bytes field, never repeated float
    assert hasattr(scorer_pb2_grpc, "ScorerStub") and hasattr(injector_pb2_grpc, "InjectorStub")
    assert injector_pb2.DESCRIPTOR.package == "lenscal.injector.v1"


def test_generated_code_is_not_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert not [f for f in tracked.splitlines() if "_pb2" in f]
