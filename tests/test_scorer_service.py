"""The scorer as real server processes on 127.0.0.1: equality with in-process inference
(torch and ONNX), order under concurrency, every error status, overload, deadlines, auth,
drain on SIGTERM, metrics, `lenscal score`."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lenscal.data.ingest import ingest
from lenscal.models import create_model
from lenscal.models.bundle import export_onnx, load_bundle, save_bundle
from lenscal.models.predict import predict
from lenscal.preprocess import PreprocessOverride, PreprocessSpec
from lenscal.rpc.arrays import encode_batch
from lenscal.rpc.scorer_client import GrpcScorer
from lenscal_pb.scorer.v1 import scorer_pb2, scorer_pb2_grpc

from .servers import make_certificate, running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    path = save_bundle(
        tmp_path_factory.mktemp("bundle") / "resnet-gen1",
        create_model("bottlenecked_resnet", base_ch=8),
        arch="bottlenecked_resnet",
        arch_kwargs={"base_ch": 8},
        spec=PreprocessSpec(),
        run_id="resnet-gen1",
    )
    export_onnx(path)
    return path


@pytest.fixture(scope="module")
def cutouts() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.01, (200, 3, 101, 101)).astype(np.float32)
    x[:, :, 45:56, 45:56] += rng.uniform(0, 2, (200, 3, 1, 1)).astype(np.float32)
    x[3, :, :4, :] = np.nan  # masked pixels are legal
    return x


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def torch_server(bundle: Path) -> Iterator[tuple[str, int]]:
    metrics = free_port()
    with running_service(
        "scorer",
        "--model",
        str(bundle),
        "--metrics-port",
        str(metrics),
        "--batch-wait-timeout-s",
        "0.01",
        "--engine",
        "torch",
    ) as (endpoint, _):
        yield endpoint, metrics


def reference(bundle: Path, x: np.ndarray, **override: float) -> np.ndarray:
    b = load_bundle(bundle)
    spec = b.spec.with_overrides(**override) if override else b.spec
    return predict(b.model, torch.from_numpy(x), spec)[0].numpy()


def test_scores_equal_in_process_torch(
    torch_server: tuple[str, int], bundle: Path, cutouts: np.ndarray
) -> None:
    with GrpcScorer(torch_server[0], wire_dtype="float32", per_message=32) as client:
        client.wait_ready()
        result = client.score(cutouts, return_embeddings=True, concurrency=6)
        clipped = client.score(cutouts[:40], override=PreprocessOverride(clip_range=3.0))
        streamed = client.score(cutouts, streaming=True, concurrency=3)
        info = client.model_info()[0]
    expected = reference(bundle, cutouts)
    np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, 1 / (1 + np.exp(-expected)), rtol=1e-5, atol=1e-6)
    assert result.embeddings is not None and result.embeddings.shape == (200, 64)
    np.testing.assert_allclose(
        clipped.logits, reference(bundle, cutouts[:40], clip_range=3.0), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(streamed.logits, result.logits, rtol=1e-6, atol=1e-6)
    assert result.model_id == "resnet-gen1" and info.architecture == "bottlenecked_resnet" and info.is_default
    assert json.loads(info.preprocess_spec_json)["annulus_r_in"] == 20.0


def test_float16_wire_and_onnx_engine(bundle: Path, cutouts: np.ndarray) -> None:
    with (
        running_service("scorer", "--model", str(bundle), "--engine", "onnx") as (endpoint, _),
        GrpcScorer(endpoint) as client,  # float16 on the wire by default
    ):
        client.wait_ready()
        result = client.score(cutouts)
    half = cutouts.astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(result.logits, reference(bundle, half), rtol=1e-4, atol=1e-4)


def test_ids_and_order_under_concurrency(
    torch_server: tuple[str, int], bundle: Path, cutouts: np.ndarray
) -> None:
    expected = reference(bundle, cutouts)
    stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(torch_server[0]))
    failures: list[str] = []

    def client(k: int) -> None:
        rng = np.random.default_rng(k)
        for _ in range(6):
            pick = rng.choice(200, size=int(rng.integers(1, 50)), replace=False)
            ids = [f"c{i}" for i in pick]
            request = scorer_pb2.ScoreRequest(batch=encode_batch(cutouts[pick], ids=ids))
            reply = stub.Score(request, timeout=60)
            if list(reply.ids) != ids or not np.allclose(reply.logits, expected[pick], rtol=1e-5, atol=1e-5):
                failures.append(f"client {k}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def _request(cutouts: np.ndarray, **fields: object) -> scorer_pb2.ScoreRequest:
    request = scorer_pb2.ScoreRequest(batch=encode_batch(cutouts[:4]))
    for key, value in fields.items():
        target, _, name = key.rpartition(".")
        setattr(request.batch if target == "batch" else request, name, value)
    return request


def test_every_bad_input_gets_its_status_and_the_server_stays_healthy(
    torch_server: tuple[str, int], cutouts: np.ndarray
) -> None:
    channel = grpc.insecure_channel(torch_server[0])
    stub = scorer_pb2_grpc.ScorerStub(channel)
    preprocessed_nan = _request(cutouts, preprocessed=True)
    bad_override = _request(cutouts)
    bad_override.preprocess_override.annulus_r_out = 5.0
    override_on_preprocessed = _request(cutouts[4:], preprocessed=True)
    override_on_preprocessed.preprocess_override.clip_range = 5.0
    infinite = cutouts[:4].copy()
    infinite[0, 0, 0, 0] = np.inf
    cases = [
        (
            _request(cutouts, **{"batch.data": b"\x00" * 10}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "batch.data: has 10 bytes",
        ),
        (
            _request(cutouts, **{"batch.count": 0}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "batch.count: must be > 0",
        ),
        (
            _request(cutouts, **{"batch.channels": 5}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "batch.channels: is 5, expected 3",
        ),
        (
            _request(cutouts, **{"batch.height": 64}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "is 64x101, expected 101x101",
        ),
        (
            _request(cutouts, **{"batch.dtype": 0}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "batch.dtype: must be FLOAT32",
        ),
        (
            scorer_pb2.ScoreRequest(batch=encode_batch(infinite)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "1 infinite value(s)",
        ),
        (preprocessed_nan, grpc.StatusCode.INVALID_ARGUMENT, "NaN value(s) in a preprocessed batch"),
        (bad_override, grpc.StatusCode.INVALID_ARGUMENT, "preprocess_override: "),
        (
            override_on_preprocessed,
            grpc.StatusCode.INVALID_ARGUMENT,
            "cannot apply to a batch marked preprocessed",
        ),
        (_request(cutouts, model="gen9"), grpc.StatusCode.NOT_FOUND, "unknown model 'gen9'"),
    ]
    ids_request = _request(cutouts)
    ids_request.batch.ids.extend(["only-one"])
    cases.append((ids_request, grpc.StatusCode.INVALID_ARGUMENT, "batch.ids: has 1 entries for 4 images"))
    for request, code, fragment in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.Score(request, timeout=30)
        assert err.value.code() == code, (fragment, err.value.details())
        assert fragment in (err.value.details() or ""), (fragment, err.value.details())
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert len(stub.Score(_request(cutouts), timeout=30).logits) == 4


def test_overload_and_deadline(bundle: Path, cutouts: np.ndarray) -> None:
    with running_service(
        "scorer",
        "--model",
        str(bundle),
        "--max-queue",
        "100",
        "--max-batch-size",
        "4096",
        "--batch-wait-timeout-s",
        "1.5",
    ) as (endpoint, _):
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        GrpcScorer(endpoint).wait_ready()
        with pytest.raises(grpc.RpcError) as late:
            stub.Score(_request(cutouts), timeout=0.2)  # the batch waits 1.5 s to fill
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        codes: list[grpc.StatusCode] = []

        def send() -> None:
            request = scorer_pb2.ScoreRequest(batch=encode_batch(cutouts[:40]))
            try:
                stub.Score(request, timeout=30)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert dict(error.trailing_metadata() or ()).get("retry-after-s")

        threads = [threading.Thread(target=send) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes.count(grpc.StatusCode.OK) >= 2 and grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        # The client library backs off and retries until the queue has room.
        assert len(GrpcScorer(endpoint, per_message=40).score(cutouts[:120], concurrency=5).logits) == 120


def test_bearer_token(bundle: Path, cutouts: np.ndarray, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with running_service("scorer", "--model", str(bundle), "--token-file", str(token)) as (endpoint, _):
        channel = grpc.insecure_channel(endpoint)
        assert health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=60
        ).status in (0, 1, 2)
        GrpcScorer(endpoint, token="s3cret").wait_ready()
        stub = scorer_pb2_grpc.ScorerStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.RpcError) as err:
                stub.Score(_request(cutouts), timeout=30, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert len(GrpcScorer(endpoint, token="s3cret").score(cutouts[:8]).logits) == 8


def test_drain_on_sigterm_loses_no_accepted_request(bundle: Path, cutouts: np.ndarray) -> None:
    expected = reference(bundle, cutouts)
    with running_service("scorer", "--model", str(bundle), "--batch-wait-timeout-s", "0.05") as (
        endpoint,
        proc,
    ):
        GrpcScorer(endpoint).wait_ready()
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        outcomes: list[str] = []
        signalled = threading.Event()

        def send(k: int) -> None:
            pick = np.arange(k * 10, k * 10 + 10) % 200
            request = scorer_pb2.ScoreRequest(batch=encode_batch(cutouts[pick]))
            for _ in range(3):  # keep the load on until the signal
                if signalled.is_set():
                    return  # after SIGTERM only what was already sent is judged
                try:
                    reply = stub.Score(request, timeout=60)
                    ok = np.allclose(reply.logits, expected[pick], rtol=1e-5, atol=1e-5)
                    outcomes.append("ok" if ok else "WRONG")
                except grpc.RpcError as error:
                    outcomes.append(error.code().name)

        threads = [threading.Thread(target=send, args=(k,)) for k in range(40)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(outcomes) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        signalled.set()
        proc.send_signal(signal.SIGTERM)  # mid-load: requests in flight
        for t in threads:
            t.join()
        assert proc.wait(timeout=60) == 0
    assert "WRONG" not in outcomes and outcomes.count("ok") >= 5 and len(outcomes) < 120  # signalled mid-load
    # Every message in flight at the signal was either answered correctly or refused with
    # UNAVAILABLE before acceptance (retryable); none was accepted and then lost.
    assert set(outcomes) <= {"ok", "UNAVAILABLE"}, outcomes


def test_metrics_and_score_cli(
    torch_server: tuple[str, int], bundle: Path, cutouts: np.ndarray, tmp_path: Path
) -> None:
    from lenscal.data.cutouts import write_cutout_npz

    rows = []
    for i in range(20):
        write_cutout_npz(tmp_path / f"c{i}.npz", cutouts[i])
        rows.append({"galaxy_id": f"g{i}", "cutout_path": f"c{i}.npz"})
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet", index=False)
    ingest(tmp_path / "m.parquet", tmp_path / "shards", progress=False)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "lenscal.cli",
            "score",
            "--endpoint",
            torch_server[0],
            "--shards",
            str(tmp_path / "shards"),
            "--out",
            str(tmp_path / "scores.parquet"),
            "--float32",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert scores.galaxy_id.tolist() == [f"g{i}" for i in range(20)]
    np.testing.assert_allclose(scores.logit, reference(bundle, cutouts[:20]), rtol=1e-5, atol=1e-5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{torch_server[1]}/metrics", timeout=10).read().decode()
    for name in (
        "lenscal_scorer_requests_total",
        "lenscal_scorer_cutouts_total",
        "lenscal_scorer_batch_size_bucket",
        "lenscal_scorer_queue_cutouts",
        "lenscal_scorer_queue_seconds",
        "lenscal_scorer_compute_seconds",
    ):
        assert name in text, name


def test_independent_node_client_from_the_proto_alone(
    torch_server: tuple[str, int], bundle: Path, cutouts: np.ndarray, tmp_path: Path
) -> None:
    import shutil

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the independent-client check")
    node_dir = Path(__file__).parent / "node"
    work = tmp_path / "node"
    shutil.copytree(node_dir, work)
    install = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert install.returncode == 0, install.stderr
    data = tmp_path / "cutouts.f32"
    np.ascontiguousarray(cutouts[:12], dtype="<f4").tofile(data)
    proto_root = Path(__file__).resolve().parent.parent / "proto"
    run = subprocess.run(
        ["node", "score_client.js", str(proto_root), torch_server[0], str(data), "12"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    reply = json.loads(run.stdout)
    assert reply["architecture"] == "bottlenecked_resnet" and reply["model_id"] == "resnet-gen1"
    assert reply["ids"] == [f"node-{i}" for i in range(12)]
    np.testing.assert_allclose(reply["logits"], reference(bundle, cutouts[:12]), rtol=1e-5, atol=1e-5)


def test_two_workers_share_one_port(bundle: Path, cutouts: np.ndarray) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "lenscal.cli",
        "serve",
        "scorer",
        "--model",
        str(bundle),
        "--workers",
        "2",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        workers: set[str] = set()
        deadline = time.monotonic() + 120
        while workers != {"0", "1"} and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "listening on" in line:
                workers.add(line.split("worker=")[1].split()[0])
        assert workers == {"0", "1"}
        with GrpcScorer(f"127.0.0.1:{port}", channels_per_endpoint=4) as client:
            client.wait_ready()
            result = client.score(cutouts[:64], concurrency=4)
        np.testing.assert_allclose(
            result.logits,
            reference(bundle, cutouts[:64].astype(np.float16).astype(np.float32)),
            rtol=1e-4,
            atol=1e-4,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_tls(bundle: Path, cutouts: np.ndarray, tmp_path: Path) -> None:
    key, cert = make_certificate(tmp_path)
    with running_service(
        "scorer", "--model", str(bundle), "--tls-cert", str(cert), "--tls-key", str(key)
    ) as (
        endpoint,
        _,
    ):
        with GrpcScorer(endpoint, root_certificates=cert.read_bytes()) as client:
            client.wait_ready()
            assert len(client.score(cutouts[:8]).logits) == 8
        plain = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        with pytest.raises(grpc.RpcError) as err:
            plain.Score(_request(cutouts), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
