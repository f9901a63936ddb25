"""Each message's two directions (lenscal.rpc.scorer_codec, lenscal.rpc.injector_codec)
round-trip: what a client encodes the servicer decodes unchanged, and back. Values are
chosen by hand (float16-exact where float16 travels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lenscal.injection.api import PriorDraw, RenderOptions
from lenscal.physics import PARAM_NAMES, ArcParams
from lenscal.preprocess_spec import PreprocessOverride, PreprocessSpec
from lenscal.rpc import injector_codec as ic
from lenscal.rpc import scorer_codec as sc
from lenscal.scoring.api import ModelInfo
from lenscal_pb.common.v1 import arrays_pb2
from lenscal_pb.injector.v1 import injector_pb2
from lenscal_pb.scorer.v1 import scorer_pb2


def _wire(message):  # through the bytes a channel carries
    return type(message).FromString(message.SerializeToString())


def test_model_info_round_trips() -> None:
    info = ModelInfo(
        name="gen4",
        model_id="gen4@abc",
        architecture="efficientnet_v2_s",
        input_shape=(3, 64, 64),
        spec=PreprocessSpec(clip_range=20.0),
        embedding_dim=1280,
        engine="onnx",
        device="cpu",
        weights_sha256="w" * 64,
        is_default=True,
        bundle_sha256="b" * 64,
    )
    assert sc.model_info_from_proto(_wire(sc.model_info_to_proto(info))) == info


def test_score_request_round_trips_cutouts_ids_and_override() -> None:
    block = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4) / 8  # float16-exact
    request = _wire(
        sc.score_request(
            block,
            model="gen4",
            override=PreprocessOverride(clip_range=20.0),
            ids=["a", "b"],
            tag=7,
        )
    )
    assert request.batch.dtype == arrays_pb2.FLOAT16  # half the bytes by default
    cutouts, ids = sc.request_cutouts(request, channels=3, size=4, max_count=10)
    np.testing.assert_array_equal(cutouts, block)
    assert ids == ["a", "b"] and request.request_tag == 7 and request.model == "gen4"
    assert sc.override_from_proto(request) == PreprocessOverride(clip_range=20.0)
    assert sc.override_from_proto(_wire(sc.score_request(block))) is None


def test_values_float16_cannot_hold_travel_as_float32() -> None:
    block = np.full((1, 3, 2, 2), 70000.0, np.float32)  # float16's largest is 65504
    request = _wire(sc.score_request(block))
    assert request.batch.dtype == arrays_pb2.FLOAT32
    np.testing.assert_array_equal(sc.request_cutouts(request, channels=3, size=2, max_count=1)[0], block)


def test_score_response_round_trips() -> None:
    logits = np.array([0.0, 2.0, -1.5], np.float32)
    embeddings = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    spec = PreprocessSpec(clip_range=10.0)
    replies = [
        _wire(sc.score_response(logits[:2], embeddings[:2], ids=["a", "b"], model_id="m", tag=0, spec=spec)),
        _wire(sc.score_response(logits[2:], embeddings[2:], ids=["c"], model_id="m", tag=1, spec=spec)),
    ]
    result = sc.score_result(replies, return_embeddings=True)
    np.testing.assert_array_equal(result.logits, logits)
    np.testing.assert_allclose(
        result.probabilities, [0.5, 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(1.5))], rtol=1e-6
    )
    np.testing.assert_array_equal(result.embeddings, embeddings)
    assert result.model_id == "m" and result.spec == spec
    assert sc.score_result([], return_embeddings=False).logits.size == 0


def _params(with_clumps: bool) -> ArcParams:
    base = {  # arcsec, radians, AB mag
        "theta_e": 1.5, "q_lens": 0.8, "phi_lens": 0.5, "lens_x": 0.0, "lens_y": 0.0, "gamma1": 0.02,
        "gamma2": -0.01, "src_x": 0.1, "src_y": -0.05, "r_e": 0.25, "n_sersic": 1.0, "q_src": 0.7,
        "phi_src": 1.0, "mag_g": 24.5, "mag_r": 24.0, "mag_z": 23.75, "psf_fwhm_g": 1.25,
        "psf_fwhm_r": 1.2, "psf_fwhm_z": 1.125,
    }  # fmt: skip
    assert set(base) == set(PARAM_NAMES)
    records = [dict(base), {**base, "theta_e": 2.0}]
    if with_clumps:
        for record in records:
            record["clumps"] = [[0.1, -0.1, 0.05, 0.5], [0.0, 0.2, 0.03, 0.25]]
            record["clump_mix"] = 0.3
    return ArcParams.from_records(records)


@pytest.mark.parametrize("with_clumps", [False, True])
def test_arc_params_round_trip(with_clumps: bool) -> None:
    params = _params(with_clumps)
    request = _wire(injector_pb2.RenderRequest(params=ic.params_to_proto(params)))
    back = ic.params_from_proto(list(request.params), field="params")
    for got, want in zip(back.records(), params.records(), strict=True):
        assert got == pytest.approx(want)
    if with_clumps:
        got, want = back.clump_records(), params.clump_records()
        assert [r["clump_mix"] for r in got] == pytest.approx([r["clump_mix"] for r in want])
        assert np.allclose([r["clumps"] for r in got], [r["clumps"] for r in want])


def test_render_options_round_trip() -> None:
    options = RenderOptions(oversample=8, psf="moffat", moffat_beta=3.5, poisson_gain=150.0, noise_seed=11)
    assert ic.options_from_proto(_wire(ic.options_to_proto(options))) == options
    assert ic.options_from_proto(_wire(ic.options_to_proto(None))) == RenderOptions()


def test_prior_draw_round_trips() -> None:
    draw = PriorDraw(
        prior="team_d01_d05",
        seed=5,
        cell="te1.500",
        theta_e=[1.5, 2.0],
        psf_fwhm=np.array([[1.3, 1.2, 1.1], [1.4, 1.3, 1.2]]),
        condition_on_host=True,
    )
    request = injector_pb2.InjectRequest()
    ic.draw_to_proto(request.prior_draw, draw, [3, 4])
    request = _wire(request)
    back = ic.draw_from_proto(request.prior_draw)
    assert (back.prior, back.seed, back.cell, list(back.theta_e), back.condition_on_host) == (
        "team_d01_d05",
        5,
        "te1.500",
        [1.5, 2.0],
        True,
    )
    np.testing.assert_array_equal(back.psf_fwhm, draw.psf_fwhm)
    assert list(request.prior_draw.indices) == [3, 4]


def test_truth_table_round_trips() -> None:
    truth = pd.DataFrame({"theta_e": [1.5, 2.0], "galaxy_id": ["a", "b"], "lensed_mag_r": [21.25, np.nan]})
    pd.testing.assert_frame_equal(ic.truth_from_bytes(ic.truth_to_bytes(truth)), truth)


def test_score_request_is_what_the_scorer_proto_says() -> None:
    # the codec fills the generated message, nothing else travels
    assert set(scorer_pb2.ScoreRequest.DESCRIPTOR.fields_by_name) >= {"batch", "model", "request_tag"}
