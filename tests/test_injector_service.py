"""The injector as a real gRPC server process on 127.0.0.1."""

from __future__ import annotations

import io
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lenscal.data.cutouts import read_cutout
from lenscal.data.ingest import ingest
from lenscal.injection import get_prior, inject, sample_params
from lenscal.injection.api import PriorDraw, RenderOptions, ShardRows
from lenscal.physics import RenderSpec, render_arcs
from lenscal.rng import noise_seed
from lenscal.rpc.arrays import encode_batch
from lenscal.rpc.injector_client import GrpcInjector
from lenscal_pb.injector.v1 import injector_pb2, injector_pb2_grpc

from .servers import running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    metrics = _free_port()
    root = str(tmp_path_factory.getbasetemp())  # shard hosts may be read under the tests' temp dirs
    with running_service("injector", "--metrics-port", str(metrics), "--data-root", root) as (
        endpoint,
        _proc,
    ):
        client = GrpcInjector(endpoint)
        client.wait_ready(60)
        client.close()
        yield endpoint, metrics


@pytest.fixture(scope="module")
def hosts(real_cutout_paths: list[Path]) -> np.ndarray:
    return np.stack([read_cutout(p) for p in real_cutout_paths])


def _params(n: int, seed: int = 1):  # type: ignore[no-untyped-def]
    return sample_params(get_prior("default"), np.full(n, 1.5), np.full((n, 3), 1.2), seed=seed)


def test_health_and_reflection(service: tuple[str, int]) -> None:
    channel = grpc.insecure_channel(service[0])
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="")).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert "lenscal.injector.v1.Injector" in names and "grpc.health.v1.Health" in names


def test_render_round_trip_equals_in_process(service: tuple[str, int]) -> None:
    params = _params(5)
    with GrpcInjector(service[0]) as client:
        arcs = client.render(params, options=RenderOptions(oversample=2))
    np.testing.assert_array_equal(arcs, render_arcs(params, RenderSpec(oversample=2)).numpy())


def test_team_clumps_cross_the_wire(service: tuple[str, int]) -> None:
    """The team's clump model (mixing fraction per arc) renders the same through the service."""
    params = sample_params(get_prior("team_d01_d05"), np.full(8, 1.5), np.full((8, 3), 1.2), seed=3)
    assert params.clump_mix is not None and bool((params.clump_mix > 0).any())
    with GrpcInjector(service[0]) as client:
        arcs = client.render(params, options=RenderOptions(oversample=2))
    np.testing.assert_array_equal(arcs, render_arcs(params, RenderSpec(oversample=2)).numpy())


def test_inject_bytes_with_poisson_is_reproducible(service: tuple[str, int], hosts: np.ndarray) -> None:
    params = _params(6, seed=2)
    options = RenderOptions(poisson_gain=150.0, noise_seed=9)
    with GrpcInjector(service[0], per_message=4) as client, GrpcInjector(service[0], per_message=3) as other:
        result = client.inject(hosts, params=params, options=options)
        images, truth = result.images, result.truth
        again = other.inject(hosts, params=params, options=options).images
    np.testing.assert_array_equal(images, again)  # per-injection generators, whatever the batching
    keys = [noise_seed(9, "explicit", i) for i in range(6)]
    local = inject(hosts, params, RenderSpec(poisson_gain=150.0, noise_seed=9), noise_keys=keys)
    np.testing.assert_array_equal(images, local.images.numpy())
    assert len(truth) == 6 and {"magnification", "lensed_mag_r", "arc_snr_r", "host_id"} <= set(truth.columns)


def test_inject_from_shards_with_prior_uses_manifest_psf(
    service: tuple[str, int], tmp_path: Path, real_manifest: Path, hosts: np.ndarray
) -> None:
    manifest = pd.read_parquet(real_manifest)
    manifest["psfsize_r"] = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
    manifest.to_parquet(real_manifest, index=False)
    ingest(real_manifest, tmp_path / "shards", progress=False)
    rows = [4, 1, 2]
    with GrpcInjector(service[0]) as client:
        result = client.inject(
            ShardRows(str(tmp_path / "shards"), rows),
            draw=PriorDraw("default", seed=5, cell="c7", theta_e=2.0),
        )
        images, truth = result.images, result.truth
    np.testing.assert_allclose(truth.psf_fwhm_r, [1.4, 1.1, 1.2])
    np.testing.assert_allclose(truth.psf_fwhm_g, np.array([1.4, 1.1, 1.2]) * 1.05)
    expected_params = sample_params(
        get_prior("default"), [2.0] * 3, truth[["psf_fwhm_g", "psf_fwhm_r", "psf_fwhm_z"]].to_numpy(),
        seed=5, cell="c7",
    )  # fmt: skip
    expected = inject(hosts[rows], expected_params)
    np.testing.assert_allclose(images, expected.images.numpy(), rtol=0, atol=1e-6)
    assert truth.host_id.tolist() == manifest.galaxy_id.iloc[rows].tolist()


def _raw_call(endpoint: str, request: injector_pb2.InjectRequest) -> grpc.RpcError:
    stub = injector_pb2_grpc.InjectorStub(grpc.insecure_channel(endpoint))
    with pytest.raises(grpc.RpcError) as err:
        stub.Inject(request, timeout=60)
    return err.value


def _good_request(hosts: np.ndarray) -> injector_pb2.InjectRequest:
    request = injector_pb2.InjectRequest()
    request.host_batch.CopyFrom(encode_batch(hosts[:2]))
    request.params.extend(injector_pb2.ArcParams(**r) for r in _params(2).records())
    return request


def test_each_bad_request_names_its_field_and_the_server_keeps_serving(
    service: tuple[str, int], hosts: np.ndarray
) -> None:
    endpoint = service[0]
    cases: list[tuple[str, object, grpc.StatusCode]] = []

    r = _good_request(hosts)
    r.host_batch.data = r.host_batch.data[:-4]
    cases.append(
        (
            "host_batch.data: has 244820 bytes; count*channels*height*width*itemsize",
            r,
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    )
    r = _good_request(hosts)
    r.host_batch.count = 0
    cases.append(("host_batch.count: must be > 0", r, grpc.StatusCode.INVALID_ARGUMENT))
    r = _good_request(hosts)
    r.host_batch.channels = 4
    cases.append(("host_batch.channels: is 4, expected 3", r, grpc.StatusCode.INVALID_ARGUMENT))
    r = _good_request(hosts)
    r.params[1].q_lens = 0.0
    cases.append(("params: row 1: q_lens=0.0 is invalid", r, grpc.StatusCode.INVALID_ARGUMENT))
    r = _good_request(hosts)
    del r.params[1]
    cases.append(("params: has 1 entries for 2 hosts", r, grpc.StatusCode.INVALID_ARGUMENT))
    r = _good_request(hosts)
    r.options.psf = "airy"
    cases.append(("options.psf:", r, grpc.StatusCode.INVALID_ARGUMENT))
    r = _good_request(hosts)
    r.prior_draw.prior = "default"
    cases.append(
        (
            "params/prior_draw: give explicit params or a prior_draw, not both",
            r,
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    )
    r = _good_request(hosts)
    del r.params[:]
    cases.append(("params: is empty and no prior_draw", r, grpc.StatusCode.INVALID_ARGUMENT))
    r = _good_request(hosts)
    del r.params[:]
    r.prior_draw.prior = "nonexistent"
    cases.append(("unknown prior 'nonexistent'", r, grpc.StatusCode.NOT_FOUND))
    r = _good_request(hosts)
    del r.params[:]
    r.prior_draw.prior = "default"
    r.prior_draw.theta_e.extend([1.0, 2.0, 3.0])
    cases.append(("prior_draw.theta_e: has 3 values for 2 hosts", r, grpc.StatusCode.INVALID_ARGUMENT))
    r = _good_request(hosts)
    del r.params[:]
    r.prior_draw.prior = "default"
    r.prior_draw.theta_e.append(1.0)
    cases.append(("hosts sent as bytes carry no PSF", r, grpc.StatusCode.INVALID_ARGUMENT))
    r = injector_pb2.InjectRequest()
    r.shard_hosts.shard_dir = "/nonexistent/shards"
    r.shard_hosts.rows.append(0)
    cases.append(("is not a shard directory this server reads", r, grpc.StatusCode.NOT_FOUND))
    r = injector_pb2.InjectRequest()
    cases.append(("hosts: give host_batch", r, grpc.StatusCode.INVALID_ARGUMENT))

    for fragment, request, code in cases:
        error = _raw_call(endpoint, request)  # type: ignore[arg-type]
        assert error.code() == code, (fragment, error.details())
        assert fragment in (error.details() or ""), (fragment, error.details())
    with GrpcInjector(endpoint) as client:
        assert client.render(_params(1)).shape == (1, 3, 101, 101)


def test_metrics_endpoint_counts_requests(service: tuple[str, int]) -> None:
    with GrpcInjector(service[0]) as client:
        client.render(_params(2))
    text = urllib.request.urlopen(f"http://127.0.0.1:{service[1]}/metrics", timeout=10).read().decode()
    assert 'lenscal_injector_requests_total{outcome="ok",rpc="Render"}' in text
    assert "lenscal_injector_arcs_total" in text


def test_truth_parquet_is_a_real_table(service: tuple[str, int], hosts: np.ndarray) -> None:
    stub = injector_pb2_grpc.InjectorStub(grpc.insecure_channel(service[0]))
    reply = stub.Inject(_good_request(hosts), timeout=60)
    truth = pd.read_parquet(io.BytesIO(reply.truth_parquet))
    assert len(truth) == 2 and truth.theta_e.tolist() == pytest.approx([1.5, 1.5])
    assert torch.isfinite(torch.tensor(truth.magnification.to_numpy())).all()
