"""One Scorer and one Injector interface, two implementations each (in this process, and the
real services over gRPC on 127.0.0.1): the same inputs give the same outputs, and the same
bad inputs raise the same lenscal errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lenscal.backends import open_injector, open_scorer
from lenscal.data.ingest import ingest
from lenscal.errors import NotFoundError, RequestError
from lenscal.injection import get_prior, sample_params
from lenscal.injection.api import Injector, PriorDraw, RenderOptions, ShardRows
from lenscal.models import create_model
from lenscal.models.bundle import export_onnx, load_bundle, save_bundle
from lenscal.models.predict import predict
from lenscal.preprocess import PreprocessOverride, PreprocessSpec, preprocess
from lenscal.scoring.api import Scorer

from .servers import running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(4)
    path = save_bundle(
        tmp_path_factory.mktemp("bundle") / "resnet-gen3",
        create_model("bottlenecked_resnet", base_ch=8),
        arch="bottlenecked_resnet",
        arch_kwargs={"base_ch": 8},
        spec=PreprocessSpec.for_annulus((32.5, 45.0)),
        run_id="resnet-gen3",
    )
    export_onnx(path)
    return path


@pytest.fixture(scope="module")
def cutouts() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.01, (150, 3, 101, 101)).astype(np.float32)
    x[:, :, 40:61, 40:61] += rng.uniform(0, 1, (150, 3, 1, 1)).astype(np.float32)
    x[7, 1, :5, :] = np.nan  # masked pixels are legal raw input
    return x


@pytest.fixture(scope="module", params=["in-process", "grpc"])
def scorer(request: pytest.FixtureRequest, bundle: Path) -> Iterator[Scorer]:
    if request.param == "in-process":
        with open_scorer(model=bundle) as local:
            yield local
        return
    with (
        running_service("scorer", "--model", str(bundle)) as (endpoint, _),
        open_scorer(endpoints=[endpoint], wire_dtype="float32", per_message=32) as remote,
    ):
        remote.wait_ready()
        yield remote


def reference(bundle: Path, x: np.ndarray, spec: PreprocessSpec | None) -> tuple[np.ndarray, np.ndarray]:
    b = load_bundle(bundle)
    logits, embeddings = predict(b.model, torch.from_numpy(x), spec, return_embeddings=True)
    assert embeddings is not None
    return logits.numpy(), embeddings.numpy()


def test_scores_overrides_embeddings_and_preprocessed_input(
    scorer: Scorer, bundle: Path, cutouts: np.ndarray
) -> None:
    spec = load_bundle(bundle).spec
    expected, embeddings = reference(bundle, cutouts, spec)
    result = scorer.score(cutouts, return_embeddings=True)
    np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, 1 / (1 + np.exp(-expected)), rtol=1e-5, atol=1e-6)
    assert result.embeddings is not None
    np.testing.assert_allclose(result.embeddings, embeddings, rtol=1e-4, atol=1e-5)
    assert result.model_id == "resnet-gen3" and result.spec == spec

    override = PreprocessOverride(clip_range=2.5, annulus_r_in=20.0, annulus_r_out=32.0)
    overridden = scorer.score(cutouts[:40], override=override)
    applied = spec.with_overrides(clip_range=2.5, annulus_r_in=20.0, annulus_r_out=32.0)
    np.testing.assert_allclose(
        overridden.logits, reference(bundle, cutouts[:40], applied)[0], rtol=1e-5, atol=1e-5
    )
    assert overridden.spec == applied

    normed = preprocess(torch.from_numpy(cutouts[:40]), spec).numpy()
    direct = scorer.score(normed, preprocessed=True)
    np.testing.assert_allclose(direct.logits, expected[:40], rtol=1e-5, atol=1e-5)
    assert direct.spec is None


def test_model_info_and_errors_are_the_same(scorer: Scorer, cutouts: np.ndarray) -> None:
    (info,) = scorer.model_info()
    assert (info.name, info.architecture, info.input_shape, info.is_default) == (
        "resnet-gen3",
        "bottlenecked_resnet",
        (3, 101, 101),
        True,
    )
    assert info.spec.annulus_r_in == 32.5 and info.embedding_dim == 64 and len(info.weights_sha256) == 64
    # The default engine is the one measured faster on the device: ONNX Runtime on a CPU.
    assert info.engine == ("torch" if torch.cuda.is_available() else "onnx")
    with pytest.raises(NotFoundError, match="unknown model 'nope'"):
        scorer.score(cutouts[:2], model="nope")
    with pytest.raises(RequestError, match="preprocess_override"):
        scorer.score(cutouts[:2], override=PreprocessOverride(annulus_r_in=40.0, annulus_r_out=30.0))
    with pytest.raises(RequestError, match="preprocess_override"):
        scorer.score(cutouts[:2], preprocessed=True, override=PreprocessOverride(clip_range=3.0))
    bad = cutouts[:2].copy()
    bad[1, 0, 0, 0] = np.inf
    with pytest.raises(RequestError, match="infinite"):
        scorer.score(bad)


# --- injector -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, real_cutout_paths: list[Path]) -> Path:
    directory = tmp_path_factory.mktemp("hosts")
    rows = []
    for i, p in enumerate(real_cutout_paths):
        rows.append({"galaxy_id": f"h{i}", "cutout_path": str(p), "psfsize_r": 1.0 + 0.1 * i})
    pd.DataFrame(rows).to_parquet(directory / "m.parquet", index=False)
    ingest(directory / "m.parquet", directory / "shards", progress=False)
    return directory / "shards"


@pytest.fixture(scope="module", params=["in-process", "grpc"])
def injector(request: pytest.FixtureRequest, shards: Path) -> Iterator[Injector]:
    if request.param == "in-process":
        with open_injector(device="cpu") as local:
            yield local
        return
    with (
        running_service("injector", "--data-root", str(shards.parent)) as (endpoint, _),
        open_injector(endpoint=endpoint) as remote,
    ):
        remote.wait_ready()
        yield remote


@pytest.fixture(scope="module")
def local_injector() -> Injector:
    return open_injector(device="cpu")


def test_render_and_inject_agree(injector: Injector, local_injector: Injector, shards: Path) -> None:
    n = 40  # more than one message of the gRPC client
    params = sample_params(get_prior("default"), np.full(n, 1.2), np.full((n, 3), 1.1), seed=3, cell="x")
    noisy = RenderOptions(poisson_gain=150.0, noise_seed=11, oversample=2)
    np.testing.assert_array_equal(
        injector.render(params, options=noisy), local_injector.render(params, options=noisy)
    )
    hosts = np.random.default_rng(1).normal(0, 0.01, (n, 3, 101, 101)).astype(np.float32)
    got = injector.inject(hosts, params=params, options=noisy, indices=range(100, 100 + n), return_arcs=True)
    want = local_injector.inject(
        hosts, params=params, options=noisy, indices=range(100, 100 + n), return_arcs=True
    )
    np.testing.assert_array_equal(got.images, want.images)
    assert got.arcs is not None and want.arcs is not None
    np.testing.assert_array_equal(got.arcs, want.arcs)
    pd.testing.assert_frame_equal(got.truth, want.truth)

    draw = PriorDraw("default", seed=8, cell="c2", theta_e=[1.0, 1.5, 2.0])
    from_shards = injector.inject(ShardRows(str(shards), [5, 0, 3]), draw=draw)
    local = local_injector.inject(ShardRows(str(shards), [5, 0, 3]), draw=draw)
    np.testing.assert_array_equal(from_shards.images, local.images)
    assert from_shards.truth.host_id.tolist() == ["h5", "h0", "h3"]
    np.testing.assert_allclose(from_shards.truth.psf_fwhm_r, [1.5, 1.0, 1.3])


def test_injector_errors_are_the_same(injector: Injector) -> None:
    params = sample_params(get_prior("default"), [1.0], np.full((1, 3), 1.1), seed=0)
    hosts = np.zeros((2, 3, 101, 101), np.float32)
    with pytest.raises(RequestError, match="params: has 1 entries for 2 hosts"):
        injector.inject(hosts, params=params)
    with pytest.raises(NotFoundError, match="unknown prior 'nope'"):
        injector.inject(hosts, draw=PriorDraw("nope", psf_fwhm=np.ones((2, 3))))
    with pytest.raises(RequestError, match=r"options\.psf"):
        injector.render(params, options=RenderOptions(psf="airy"))


def test_noise_repeats_only_when_asked(injector: Injector) -> None:
    params = sample_params(get_prior("default"), np.full(3, 1.5), np.full((3, 3), 1.1), seed=2)
    hosts = np.zeros((3, 3, 101, 101), np.float32)
    with pytest.raises(RequestError, match=r"options\.noise_seed: is required with poisson_gain"):
        injector.inject(hosts, params=params, options=RenderOptions(poisson_gain=150.0))
    first = injector.inject(hosts, params=params, options=RenderOptions(poisson_gain=150.0, noise_seed=1))
    second = injector.inject(hosts, params=params, options=RenderOptions(poisson_gain=150.0, noise_seed=2))
    again = injector.inject(hosts, params=params, options=RenderOptions(poisson_gain=150.0, noise_seed=1))
    other_cell = injector.inject(
        hosts, params=params, options=RenderOptions(poisson_gain=150.0, noise_seed=1, noise_cell="c9")
    )
    assert not np.array_equal(first.images, second.images)
    assert not np.array_equal(first.images, other_cell.images)
    np.testing.assert_array_equal(first.images, again.images)
