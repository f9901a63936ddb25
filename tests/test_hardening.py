"""Hostile and unlucky clients against real service processes: one regression test per way
the services broke before (issue: service hardening)."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lenscal.data.ingest import ingest
from lenscal.errors import RequestError
from lenscal.injection import get_prior, sample_params
from lenscal.injection.core import InjectorCore
from lenscal.models import create_model
from lenscal.models.bundle import load_bundle, save_bundle
from lenscal.models.predict import predict
from lenscal.preprocess import PreprocessSpec
from lenscal.rpc.arrays import encode_batch
from lenscal.rpc.scorer_client import GrpcScorer
from lenscal_pb.injector.v1 import injector_pb2, injector_pb2_grpc
from lenscal_pb.scorer.v1 import scorer_pb2, scorer_pb2_grpc

from .servers import make_certificate, running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(2)
    return save_bundle(
        tmp_path_factory.mktemp("bundle") / "resnet-gen1",
        create_model("bottlenecked_resnet", base_ch=8),
        arch="bottlenecked_resnet",
        arch_kwargs={"base_ch": 8},
        spec=PreprocessSpec(),
        run_id="resnet-gen1",
    )


@pytest.fixture(scope="module")
def cutouts() -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.01, (512, 3, 101, 101)).astype(np.float32)
    x[:, :, 45:56, 45:56] += rng.uniform(0, 2, (512, 3, 1, 1)).astype(np.float32)
    return x


def reference(bundle: Path, x: np.ndarray) -> np.ndarray:
    b = load_bundle(bundle)
    return predict(b.model, torch.from_numpy(x), b.spec)[0].numpy()


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def request(cutouts: np.ndarray) -> scorer_pb2.ScoreRequest:
    return scorer_pb2.ScoreRequest(batch=encode_batch(cutouts, dtype=np.float16))


# --- 1: cancelled streams -----------------------------------------------------------------


def test_cancelled_streams_leave_no_work_threads_or_memory(bundle: Path, cutouts: np.ndarray) -> None:
    with running_service("scorer", "--model", str(bundle)) as (endpoint, proc):
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        stub.Score(request(cutouts[:64]), timeout=60)
        counts = []
        for _round in range(6):
            calls = [stub.ScoreStream(iter([request(cutouts[:64])] * 60), timeout=120) for _ in range(8)]
            for call in calls:
                next(call), next(call)  # two replies, then the client leaves
                call.cancel()
            started = time.monotonic()
            stub.Score(request(cutouts[:64]), timeout=60)
            assert time.monotonic() - started < 10, "a fresh call waited behind abandoned work"
            counts.append(_settled(proc.pid))
        # The server's handler pool keeps its threads for reuse and the first burst sizes the
        # allocator; nothing may accumulate after that: the same thread count and memory after
        # every later round (it was +8 threads and +0.4-1.1 GiB each).
        assert counts[-1][0] <= counts[1][0] + 1, counts
        # Batch sizes vary with timing, so RSS wanders by up to ~0.3 GB around a plateau; a leak
        # of 0.4 GiB per round would add 1.6 GiB over these four. Without the idle heap trim
        # (lenscal.rpc.heap) freed pages stayed in glibc's heap: +0.6-1.0 GB over these rounds.
        assert counts[-1][1] - counts[1][1] < 600_000, counts  # kB


@pytest.fixture(scope="module")
def big_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's 195K-parameter ResNet: slow enough on a CPU that abandoned work shows."""
    torch.manual_seed(3)
    return save_bundle(
        tmp_path_factory.mktemp("big") / "resnet-big",
        create_model("bottlenecked_resnet"),
        arch="bottlenecked_resnet",
        arch_kwargs={},
        spec=PreprocessSpec(),
        run_id="resnet-big",
    )


def test_after_mass_cancellation_a_fresh_call_answers_within_a_second(
    big_bundle: Path, cutouts: np.ndarray
) -> None:
    """8 ScoreStreams of 16 x 150 cutouts cancelled: the next 4-cutout Score answered within
    1 s of its unloaded latency (4.3 s on a quiet machine and 8.5 s at load 7.5 before)."""
    with running_service("scorer", "--model", str(big_bundle)) as (endpoint, _):
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        stub.Score(request(cutouts[:64]), timeout=60)
        unloaded = []
        for _ in range(5):
            started = time.monotonic()
            stub.Score(request(cutouts[:4]), timeout=60)
            unloaded.append(time.monotonic() - started)
        waits = []
        for _round in range(3):
            calls = [stub.ScoreStream(iter([request(cutouts[:150])] * 16), timeout=120) for _ in range(8)]
            next(calls[0])  # work is in flight
            for call in calls:
                call.cancel()
            started = time.monotonic()
            stub.Score(request(cutouts[:4]), timeout=60)
            waits.append(time.monotonic() - started)
        assert min(waits) < min(unloaded) + 1.0, (waits, unloaded)
        assert sorted(waits)[1] < min(unloaded) + 1.0, (waits, unloaded)  # the median too


def test_cancelled_unary_calls_are_not_computed(big_bundle: Path, cutouts: np.ndarray) -> None:
    """20 Score calls of 256 cutouts, each cancelled 0.1 s after sending: before, 3,328 of
    the 5,120 cutouts were still computed and the next call waited 14.8 s."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    with running_service("scorer", "--model", str(big_bundle), "--metrics-port", str(metrics_port)) as (
        endpoint,
        _,
    ):
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        stub.Score(request(cutouts[:8]), timeout=60)
        before = _computed(metrics_port)
        futures = [stub.Score.future(request(cutouts[:256]), timeout=60) for _ in range(20)]
        time.sleep(0.1)
        for future in futures:
            future.cancel()
        started = time.monotonic()
        stub.Score(request(cutouts[:4]), timeout=60)
        waited = time.monotonic() - started
        computed = _computed(metrics_port) - before - 4
        assert waited < 2.0, waited
        assert computed < 5120 // 4, f"{computed} of 5,120 cancelled cutouts were computed"


def _computed(port: int) -> float:
    """Cutouts the scorer computed: the sum of its device-batch-size histogram."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    lines = text.splitlines()
    return next(float(line.split()[1]) for line in lines if line.startswith("lenscal_scorer_batch_size_sum"))


def test_a_call_without_a_deadline_is_answered(bundle: Path, cutouts: np.ndarray) -> None:
    """grpcurl's default: no deadline. It got INTERNAL OverflowError and an ERROR line."""
    with running_service("scorer", "--model", str(bundle)) as (endpoint, proc):
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        assert len(stub.Score(request(cutouts[:4])).logits) == 4
        replies = list(stub.ScoreStream(iter([request(cutouts[:4])] * 2)))
        assert [len(r.logits) for r in replies] == [4, 4]
    assert '"ERROR"' not in "".join(proc.lines)


def test_undecodable_messages_are_refused_quietly_with_bounded_memory(bundle: Path) -> None:
    """Each used to cost an ERROR line with a traceback and ~19 KB of RSS never returned
    (grpcio's deserialisation-failure path); now INVALID_ARGUMENT, no log line, no growth."""
    with running_service("scorer", "--model", str(bundle)) as (endpoint, proc):
        channel = grpc.insecure_channel(endpoint)
        raw = [
            channel.unary_unary(
                f"/lenscal.scorer.v1.Scorer/{method}",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            for method in ("Score", "GetModelInfo")
        ]

        def burst(n: int) -> set[grpc.StatusCode]:
            codes = set()
            for i in range(n):
                with pytest.raises(grpc.RpcError) as err:
                    raw[i % 2](b"\xff\xff\xff\xff garbage %d" % i, timeout=10)
                codes.add(err.value.code())
            return codes

        burst(500)  # the allocator's first growth
        before = proc_status(proc.pid, "VmRSS")
        assert burst(2500) == {grpc.StatusCode.INVALID_ARGUMENT}
        growth_per_message = (proc_status(proc.pid, "VmRSS") - before) * 1024 / 2500
        assert growth_per_message < 2048, f"{growth_per_message:.0f} bytes of RSS per bad message"
    assert sum('"ERROR"' in line for line in proc.lines) == 0


def test_sigterm_is_obeyed_after_an_undecodable_stream_message(bundle: Path) -> None:
    """The client keeps its stream open after one bad message: the scorer ignored SIGTERM
    for over 75 s (its wait for the signal had no time limit)."""
    with running_service("scorer", "--model", str(bundle)) as (endpoint, proc):
        channel = grpc.insecure_channel(endpoint)
        stream = channel.stream_stream(
            "/lenscal.scorer.v1.Scorer/ScoreStream",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        hold = threading.Event()

        def messages() -> Iterator[bytes]:
            yield b"\xff\xff\xff\xff garbage"
            hold.wait(120)  # the channel and the stream stay open

        call = stream(messages(), timeout=120)
        with pytest.raises(grpc.RpcError) as err:
            next(call)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        hold.set()
        assert time.monotonic() - started < 45  # the drain grace (30 s) at most


def _settled(pid: int, deadline_s: float = 90.0) -> tuple[int, int]:
    """(threads, RSS kB) once the server has let go of abandoned work: readings taken until
    RSS stops falling (a loaded machine takes longer to unwind; no fixed sleep to lose to)."""
    deadline = time.monotonic() + deadline_s
    previous = proc_status(pid, "VmRSS")
    while True:
        time.sleep(1.0)
        now = proc_status(pid, "VmRSS")
        if now >= previous - 2048 or time.monotonic() > deadline:  # within 2 MB: settled
            return proc_status(pid, "Threads"), now
        previous = now


# --- 2: idle streams ----------------------------------------------------------------------


def test_idle_streams_cannot_starve_health_or_unary_calls(bundle: Path, cutouts: np.ndarray) -> None:
    with running_service("scorer", "--model", str(bundle), "--max-streams", "8") as (endpoint, _):
        channel = grpc.insecure_channel(endpoint)
        stub = scorer_pb2_grpc.ScorerStub(channel)
        release = threading.Event()

        def idle() -> Iterator[scorer_pb2.ScoreRequest]:
            release.wait(120)
            return
            yield  # never sends

        calls = [stub.ScoreStream(idle(), timeout=120) for _ in range(32)]
        time.sleep(2.0)
        started = time.monotonic()
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING and time.monotonic() - started < 5
        assert len(stub.Score(request(cutouts[:8]), timeout=30).logits) == 8
        refused = 0
        for call in calls:
            if call.done() and call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                refused += 1
                assert "--max-streams" in call.details()
        assert refused == 24  # 8 admitted, the rest answered at once
        release.set()
        for call in calls:
            call.cancel()


# --- 3: failover --------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
def test_a_job_survives_a_replica_draining_mid_job(
    bundle: Path, cutouts: np.ndarray, streaming: bool
) -> None:
    expected = reference(bundle, cutouts.astype(np.float16).astype(np.float32))
    with (
        running_service("scorer", "--model", str(bundle), "--batch-wait-timeout-s", "0.02") as (a, proc_a),
        running_service("scorer", "--model", str(bundle), "--batch-wait-timeout-s", "0.02") as (b, _),
    ):
        client = GrpcScorer([a, b], per_message=16, concurrency=4, streaming=streaming)
        client.wait_ready()
        done = threading.Event()

        def progress(n: int) -> None:
            done.set()

        killer = threading.Thread(target=lambda: done.wait(60) and proc_a.send_signal(signal.SIGTERM))
        killer.start()
        result = client.score(cutouts, progress=progress)
        killer.join()
        assert proc_a.wait(timeout=60) == 0
    assert len(result.logits) == len(cutouts)
    np.testing.assert_allclose(result.logits, expected, rtol=1e-3, atol=1e-3)


def test_two_workers_end_in_flight_calls_with_retryable_codes(bundle: Path, cutouts: np.ndarray) -> None:
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "lenscal.cli", "serve", "scorer", "--model", str(bundle),
               "--workers", "2", "--port", str(port), "--batch-wait-timeout-s", "0.05"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        GrpcScorer(f"127.0.0.1:{port}").wait_ready(120, connect_timeout_s=120)  # still starting
        time.sleep(3)  # both workers up
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        outcomes: list[str] = []
        signalled = threading.Event()

        def send() -> None:
            for _ in range(20):
                if signalled.is_set():
                    return
                try:
                    stub.Score(request(cutouts[:32]), timeout=60)
                    outcomes.append("ok")
                except grpc.RpcError as error:
                    outcomes.append(error.code().name)

        threads = [threading.Thread(target=send) for _ in range(16)]
        for t in threads:
            t.start()
        while len(outcomes) < 10:
            time.sleep(0.01)
        signalled.set()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert set(outcomes) <= {"ok", "UNAVAILABLE"}, outcomes


# --- 4: logs ------------------------------------------------------------------------------


def test_cancels_and_deadlines_are_not_logged_as_errors(bundle: Path, cutouts: np.ndarray) -> None:
    with running_service("scorer", "--model", str(bundle), "--batch-wait-timeout-s", "0.5") as (
        endpoint,
        proc,
    ):
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        for _ in range(20):
            future = stub.Score.future(request(cutouts[:64]), timeout=30)
            future.cancel()
            with pytest.raises(grpc.RpcError):
                stub.Score(request(cutouts[:64]), timeout=0.05)
        stub.Score(request(cutouts[:8]), timeout=30)
        proc.terminate()
        proc.wait(timeout=30)
    text = "".join(proc.lines)
    assert '"level": "ERROR"' not in text, text[-2000:]


def test_real_errors_keep_their_traceback_in_json_logs(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lenscal.logs import JsonFormatter

    record = logging.LogRecord(
        "lenscal.rpc", logging.ERROR, __file__, 1, "unexpected error in Score", (), None
    )
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR" and "ValueError: boom" in entry["traceback"]


# --- 7, 8, 9, 11: the injector bounds its work -------------------------------------------


@pytest.fixture(scope="module")
def injector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    root = tmp_path_factory.mktemp("roots")
    with running_service("injector", "--data-root", str(root / "allowed")) as (endpoint, proc):
        yield endpoint, proc.pid, root


def _params(n: int) -> list[injector_pb2.ArcParams]:
    drawn = sample_params(get_prior("default"), np.full(n, 1.5), np.full((n, 3), 1.2), seed=1)
    return [injector_pb2.ArcParams(**r) for r in drawn.records()]


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    return err.value.code(), err.value.details() or ""


def test_huge_render_settings_are_refused_before_any_work(injector: tuple[str, int, Path]) -> None:
    endpoint, pid, _ = injector
    stub = injector_pb2_grpc.InjectorStub(grpc.insecure_channel(endpoint))
    rss = proc_status(pid, "VmRSS")
    for beta in (1.8, 1.6, 1.3, 1.0001):
        options = injector_pb2.RenderOptions(psf="moffat", moffat_beta=beta)
        started = time.monotonic()
        code, details = _code(
            lambda o=options: stub.Render(
                injector_pb2.RenderRequest(params=_params(1), options=o), timeout=30
            )
        )
        assert (
            code == grpc.StatusCode.INVALID_ARGUMENT
            and "kernel" in details
            and time.monotonic() - started < 2
        )
    big = injector_pb2.RenderRequest(
        params=_params(1), height=1024, width=1024, options=injector_pb2.RenderOptions(oversample=32)
    )
    code, details = _code(lambda: stub.Render(big, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "sub-pixels per side" in details
    assert proc_status(pid, "VmRSS") - rss < 100_000  # kB: nothing was allocated for them
    wide = injector_pb2.RenderRequest(params=_params(300), height=256, width=256)
    started = time.monotonic()
    code, details = _code(lambda: stub.Render(wide, timeout=60))
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT and "message limit" in details and "send at most" in details
    )
    assert time.monotonic() - started < 2  # refused before rendering


def test_garbage_values_get_invalid_argument_not_internal_or_nan(injector: tuple[str, int, Path]) -> None:
    endpoint, _, root = injector
    stub = injector_pb2_grpc.InjectorStub(grpc.insecure_channel(endpoint))
    hosts = np.zeros((1, 3, 101, 101), np.float32)
    for gain in (1e300, 1e-300):
        r = injector_pb2.InjectRequest(
            params=_params(1), options=injector_pb2.RenderOptions(poisson_gain=gain, noise_seed=1)
        )
        r.host_batch.CopyFrom(encode_batch(hosts))
        code, details = _code(lambda r=r: stub.Inject(r, timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "poisson_gain" in details
    bright = _params(1)
    bright[0].mag_g = -400
    r = injector_pb2.InjectRequest(params=bright)
    r.host_batch.CopyFrom(encode_batch(hosts))
    code, details = _code(lambda: stub.Inject(r, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "mag_g=-400.0" in details
    bad_host = hosts.copy()
    bad_host[0, 1, 5, 5] = np.inf
    r = injector_pb2.InjectRequest(params=_params(1))
    r.host_batch.CopyFrom(encode_batch(bad_host))
    code, details = _code(lambda: stub.Inject(r, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "infinite" in details
    allowed = _shards(root / "allowed" / "s")
    r = injector_pb2.InjectRequest(params=_params(1))
    r.shard_hosts.shard_dir = str(allowed)
    r.shard_hosts.rows.append(2**63)
    code, details = _code(lambda: stub.Inject(r, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "out of range" in details


def test_departed_callers_leave_no_work_behind(injector: tuple[str, int, Path]) -> None:
    endpoint, _, _ = injector
    stub = injector_pb2_grpc.InjectorStub(grpc.insecure_channel(endpoint))
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as err:
            stub.Render(injector_pb2.RenderRequest(params=_params(500)), timeout=1)  # ~2.5 s of work
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    started = time.monotonic()
    stub.Render(injector_pb2.RenderRequest(params=_params(1)), timeout=60)
    assert time.monotonic() - started < 5  # was 23.6 s behind abandoned renders


def _shards(directory: Path) -> Path:
    from lenscal.data.cutouts import write_cutout_npz

    directory.mkdir(parents=True, exist_ok=True)
    write_cutout_npz(directory / "c0.npz", np.zeros((3, 101, 101), np.float32))
    pd.DataFrame([{"galaxy_id": "g0", "cutout_path": "c0.npz", "psfsize_r": 1.2}]).to_parquet(
        directory / "m.parquet"
    )
    ingest(directory / "m.parquet", directory / "shards", progress=False)
    return directory / "shards"


def test_shard_paths_are_confined_and_errors_reveal_nothing(injector: tuple[str, int, Path]) -> None:
    endpoint, _, root = injector
    stub = injector_pb2_grpc.InjectorStub(grpc.insecure_channel(endpoint))
    inside = _shards(root / "allowed" / "x")
    outside = _shards(root / "secret")
    answers = []
    for path in (f"{inside}/../../../secret/shards", str(outside), str(root / "allowed" / "missing"), "/etc"):
        r = injector_pb2.InjectRequest(params=_params(1))
        r.shard_hosts.shard_dir = path
        r.shard_hosts.rows.append(0)
        code, details = _code(lambda r=r: stub.Inject(r, timeout=30))
        answers.append((code, details.replace(path, "<path>")))
    assert len(set(answers)) == 1 and answers[0][0] == grpc.StatusCode.NOT_FOUND, answers
    r = injector_pb2.InjectRequest(params=_params(1))
    r.shard_hosts.shard_dir = f"{root}/allowed/./x/../x/shards"
    r.shard_hosts.rows.append(0)
    assert stub.Inject(r, timeout=60).injected.count == 1  # an allowed spelling works


def test_one_reader_per_real_directory(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "data")
    core = InjectorCore(device="cpu", data_roots=[tmp_path])
    for k in range(1500):
        spelling = str(shards).replace("/data/", "/data/" + "./" * (k % 50) + ("../data/" if k % 2 else ""))
        core.shard_hosts(spelling, [0])
    assert len(core._readers) == 1
    with pytest.raises(RequestError, match="out of range"):
        core.shard_hosts(str(shards), [2**63])


def test_injector_token_auth(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok3n\n")
    with running_service("injector", "--token-file", str(token)) as (endpoint, _):
        channel = grpc.insecure_channel(endpoint)
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        stub = injector_pb2_grpc.InjectorStub(channel)
        code, _ = _code(lambda: stub.Render(injector_pb2.RenderRequest(params=_params(1)), timeout=30))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.Render(
            injector_pb2.RenderRequest(params=_params(1)),
            timeout=30,
            metadata=(("authorization", "Bearer tok3n"),),
        )
        assert reply.arcs.count == 1


# --- 11: the scorer never returns NaN ------------------------------------------------------


def test_the_scorer_refuses_values_that_would_give_nan(bundle: Path, cutouts: np.ndarray) -> None:
    with running_service("scorer", "--model", str(bundle)) as (endpoint, _):
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(endpoint))
        raw = cutouts[:4].copy()
        raw[2, 0, 0, 0] = 3e38
        code, details = _code(
            lambda: stub.Score(scorer_pb2.ScoreRequest(batch=encode_batch(raw)), timeout=30)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "beyond" in details
        pre = np.zeros((2, 3, 101, 101), np.float32)
        pre[1, 0, 0, 0] = 1.7e38
        r = scorer_pb2.ScoreRequest(batch=encode_batch(pre), preprocessed=True)
        code, details = _code(lambda: stub.Score(r, timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "beyond" in details


def test_a_non_finite_score_fails_only_its_own_request() -> None:
    from concurrent.futures import wait

    from lenscal.scoring.batcher import MicroBatcher

    def run(_key: object, x: np.ndarray) -> tuple[np.ndarray, None]:
        out = x[:, 0, 0, 0].astype(np.float32).copy()
        out[out > 100] = np.nan  # what an overflowing cutout would give
        return out, None

    batcher = MicroBatcher(run, max_batch_size=64, batch_wait_timeout_s=0.2)
    good = np.zeros((3, 3, 2, 2), np.float32)
    bad = np.zeros((3, 3, 2, 2), np.float32)
    bad[1, 0, 0, 0] = 1000
    futures = [batcher.submit("k", good), batcher.submit("k", bad)]
    wait(futures)
    assert futures[0].result()[0].tolist() == [0, 0, 0]
    with pytest.raises(RequestError, match="cutout 1 gives a non-finite score"):
        futures[1].result()
    batcher.close()


def test_the_retry_hint_follows_the_measured_drain_rate() -> None:
    from lenscal.errors import OverloadedError
    from lenscal.scoring.batcher import MicroBatcher

    def slow(_key: object, x: np.ndarray) -> tuple[np.ndarray, None]:
        time.sleep(0.1)  # 64 cutouts per 0.1 s: 640 cutouts/s
        return np.zeros(len(x), np.float32), None

    batcher = MicroBatcher(slow, max_batch_size=64, batch_wait_timeout_s=0.0, max_queue=640)
    batcher.submit("k", np.zeros((64, 3, 2, 2), np.float32)).result()  # measure
    with pytest.raises(OverloadedError) as err:
        for _ in range(20):
            batcher.submit("k", np.zeros((64, 3, 2, 2), np.float32))
    assert 0.5 < err.value.retry_after_s < 2.0  # ~600 queued at ~640/s: ~1 s, not the 0.05 s floor
    batcher.close()


def test_injector_tls(tmp_path: Path) -> None:
    from lenscal.rpc.injector_client import GrpcInjector

    key, cert = make_certificate(tmp_path)
    with running_service("injector", "--tls-cert", str(cert), "--tls-key", str(key)) as (endpoint, _):
        with GrpcInjector(endpoint, root_certificates=cert.read_bytes()) as client:
            client.wait_ready()
            drawn = sample_params(get_prior("default"), [1.5], np.full((1, 3), 1.2), seed=1)
            assert client.render(drawn).shape == (1, 3, 101, 101)
        plain = injector_pb2_grpc.InjectorStub(grpc.insecure_channel(endpoint))
        code, _ = _code(lambda: plain.Render(injector_pb2.RenderRequest(params=_params(1)), timeout=10))
        assert code == grpc.StatusCode.UNAVAILABLE
