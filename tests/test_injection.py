"""Priors, per-injection reproducibility, host shapes, IM2 conditioning and inject()."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lenscal.data.cutouts import read_cutout
from lenscal.injection import get_prior, host_pool, host_psf_fwhm, host_shape, inject, sample_params
from lenscal.injection.hosts import host_moments
from lenscal.injection.priors import InjectionPrior, PriorError
from lenscal.physics import ArcParams, RenderSpec, render_arcs

from .conftest import LENSCAL, TEAM_KIT

TEAM_PRIORS = TEAM_KIT / "seed" / "configs" / "injection_priors.yaml"


def test_team_prior_file_loads_unchanged() -> None:
    prior = InjectionPrior.from_yaml(TEAM_PRIORS)
    assert prior.source_params.beta_frac_range == (0.10, 0.40)
    assert prior.source_params.re_arcsec_range == (0.15, 0.50)
    assert prior.source_params.g_minus_r_mu_sigma == (1.15, 0.30)
    assert prior.lens_params.q_lens_range == (0.5, 1.0)
    assert prior.model2_conditioning.q_floor == 0.5
    assert prior.preprocessing is not None and prior.preprocessing.annulus_r_out == 32


def test_bad_prior_files_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("source_params:\n  r_mag_rnge: [23, 26]\n")
    with pytest.raises(PriorError, match=r"source_params\.r_mag_rnge: Extra inputs are not permitted"):
        InjectionPrior.from_yaml(bad)
    bad.write_text("lens_params:\n  q_lens_range: [0.9, 0.5]\n")
    with pytest.raises(PriorError, match="q_lens_range must be"):
        InjectionPrior.from_yaml(bad)
    with pytest.raises(PriorError, match="unknown prior 'nope'"):
        get_prior("nope")


def _draw(n: int, **kw: object) -> ArcParams:
    return sample_params(get_prior("default"), np.full(n, 1.5), np.full((n, 3), 1.2), seed=7, cell="c3", **kw)


def test_any_injection_regenerates_alone() -> None:
    everything = _draw(50).records()
    for i in (0, 17, 49):
        assert _draw(1, indices=[i]).records()[0] == everything[i]
    other_cell = sample_params(get_prior("default"), [1.5], np.full((1, 3), 1.2), seed=7, cell="c4")
    assert other_cell.records()[0] != everything[0]


def test_draws_follow_the_prior() -> None:
    drawn = pd.DataFrame(_draw(4000).records())
    sp = get_prior("default").source_params
    assert drawn.mag_r.between(*sp.r_mag_range).all()
    beta = np.hypot(drawn.src_x - drawn.lens_x, drawn.src_y - drawn.lens_y) / drawn.theta_e
    assert beta.between(0.1 - 1e-9, 0.4 + 1e-9).all()
    # Area-weighted: P(beta_frac < b) = (b^2 - lo^2) / (hi^2 - lo^2); at b = 0.3 that is 8/15.
    assert (beta < 0.3).mean() == pytest.approx(8 / 15, abs=0.025)
    assert (drawn.mag_g - drawn.mag_r).mean() == pytest.approx(1.15, abs=0.02)
    assert (drawn.mag_r - drawn.mag_z).std() == pytest.approx(0.20, abs=0.01)
    # The team's engine: each shear component N(0, sigma), so |gamma| is Rayleigh(sigma).
    assert drawn.gamma1.std() == pytest.approx(0.05, rel=0.05) and abs(drawn.gamma1.mean()) < 0.004
    assert drawn.gamma2.std() == pytest.approx(0.05, rel=0.05) and abs(drawn.gamma2.mean()) < 0.004
    shear = np.hypot(drawn.gamma1, drawn.gamma2)
    assert shear.mean() == pytest.approx(0.05 * np.sqrt(np.pi / 2), rel=0.05)  # 0.063, Rayleigh mean


def test_half_normal_shear_is_a_named_option() -> None:
    prior = InjectionPrior.model_validate({"lens_params": {"shear": "half_normal_magnitude"}})
    drawn = pd.DataFrame(sample_params(prior, np.full(4000, 1.5), np.full((4000, 3), 1.2), seed=7).records())
    shear = np.hypot(drawn.gamma1, drawn.gamma2)
    assert shear.mean() == pytest.approx(0.05 * np.sqrt(2 / np.pi), rel=0.05)  # 0.040, half-normal mean


@pytest.mark.parametrize(
    ("definition", "q_src"), [("major_axis", 1.0), ("major_axis", 0.4), ("circularised", 0.4)]
)
def test_r_e_means_what_the_prior_says(definition: str, q_src: float) -> None:
    """Half the unlensed flux lies inside the ellipse whose semi-major axis is the prior's R_e
    (team convention) or whose geometric-mean radius is R_e (circularised)."""
    prior = InjectionPrior.model_validate(
        {"source_params": {"re_arcsec_range": [0.4, 0.4], "q_range": [q_src, q_src], "n_range": [1.0, 1.0],
                           "re_definition": definition}}
    )  # fmt: skip
    drawn = sample_params(prior, [1.0], np.full((1, 3), 0.05), seed=3).records()[0]
    source = {**drawn, "theta_e": 0.0, "gamma1": 0.0, "gamma2": 0.0, "src_x": 0.0, "src_y": 0.0}
    spec = RenderSpec(size=161, pixel_scale=0.02, oversample=4, max_psf_fwhm=0.1, dtype="float64")
    image = render_arcs(ArcParams.from_records([source]), spec)[0, 1].numpy().astype(np.float64)
    c = (spec.size - 1) / 2
    rows, cols = np.mgrid[0 : spec.size, 0 : spec.size]
    x, y = (cols - c) * spec.pixel_scale, (rows - c) * spec.pixel_scale
    phi = drawn["phi_src"]
    xp, yp = x * np.cos(phi) + y * np.sin(phi), y * np.cos(phi) - x * np.sin(phi)
    a = 0.4 if definition == "major_axis" else 0.4 / np.sqrt(q_src)  # semi-major axis of the ellipse
    inside = (xp / a) ** 2 + (yp / (q_src * a)) ** 2 <= 1.0
    assert image[inside].sum() / image.sum() == pytest.approx(0.5, abs=0.01)


def test_host_shape_by_hand() -> None:
    # e1 = 1/3, e2 = 0: e = 1/3 -> q = 0.5; theta = 0 (north) -> phi = pi/2 (+y).
    q, phi = host_shape(np.array([1 / 3, 0.0, 0.0]), np.array([0.0, 1 / 3, 0.0]))
    np.testing.assert_allclose(q, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(phi[:2], [np.pi / 2, 3 * np.pi / 4])  # theta = 45 deg E of N


def test_im2_conditions_q_and_phi_on_the_host() -> None:
    q_host, phi_host = np.array([0.6, 0.9, 0.4]), np.array([0.1, 1.0, 2.0])
    drawn = sample_params(
        get_prior("default"), np.full(3, 1.5), np.full((3, 3), 1.2), seed=1, host_q=q_host, host_phi=phi_host
    )
    np.testing.assert_allclose(drawn.phi_lens.numpy(), phi_host)
    assert (np.abs(drawn.q_lens.numpy()[:2] - q_host[:2]) < 0.25).all()
    assert drawn.q_lens.numpy()[2] >= 0.5  # clipped at q_floor


def test_host_pools_and_psf() -> None:
    manifest = pd.DataFrame(
        {
            "split": ["val", "val", "train", "val", "val"],
            "label": [0, 0, 0, 1, 0],
            "type": ["DEV", "EXP", "DEV", "DEV", "SER"],
            "psfsize_r": [1.0, 1.2, 1.1, 1.3, 1.0],
            "psfsize_g": [np.nan, 1.5, 1.4, 1.3, 1.0],
        }
    )
    assert host_pool(manifest, "IM1").index.tolist() == [0, 1, 4]
    assert host_pool(manifest, "IM2").index.tolist() == [0, 4]  # DEV/SER val negatives, no colour cuts
    np.testing.assert_allclose(host_psf_fwhm(manifest.iloc[:2]), [[1.05, 1.0, 0.94], [1.5, 1.2, 1.2 * 0.94]])


def test_host_moments_recover_a_known_ellipse() -> None:
    rows, cols = np.mgrid[0:101, 0:101].astype(np.float64)
    x, y = cols - 50, rows - 50
    images = np.zeros((3, 3, 101, 101))
    for k, (q, phi) in enumerate([(0.5, 0.6), (0.8, 2.5), (1.0, 0.0)]):
        xp, yp = x * np.cos(phi) + y * np.sin(phi), y * np.cos(phi) - x * np.sin(phi)
        images[k, 1] = np.exp(-0.5 * ((xp / 6.0) ** 2 + (yp / (6.0 * q)) ** 2))  # sigma ratio = q
    q, phi = host_moments(images)
    np.testing.assert_allclose(q, [0.5, 0.8, 1.0], atol=0.01)
    np.testing.assert_allclose(phi[:2], [0.6, 2.5], atol=0.01)
    assert host_moments(np.zeros((1, 3, 101, 101))) == (pytest.approx([1.0]), pytest.approx([0.0]))


def test_im2_on_a_team_style_16_column_manifest(tmp_path: Path, real_cutout_paths: list[Path]) -> None:
    """The team's manifest has type_bin but no Tractor fluxes or shapes: IM2 still selects
    hosts, and conditions each lens on its host's measured r-band shape."""
    from lenscal.data.ingest import ingest
    from lenscal.injection.api import PriorDraw, ShardRows
    from lenscal.injection.local import LocalInjector

    team_columns = ["galaxy_id", "cutout_path", "ra", "dec", "type_bin", "nobs_z_bin", "split", "pool",
                    "confuser_category", "psfsize_r", "psfdepth_r", "ebv", "healpix_128", "label", "tier",
                    "sample_weight"]  # fmt: skip
    n = len(real_cutout_paths)
    manifest = pd.DataFrame(
        {
            "galaxy_id": [f"t{i}" for i in range(n)],
            "cutout_path": [str(p) for p in real_cutout_paths],
            "ra": np.linspace(150, 151, n),
            "dec": np.full(n, 2.0),
            "type_bin": ["DEV", "SER", "REX", "DEV", "SER", "EXP"],
            "nobs_z_bin": ["3+"] * n,
            "split": ["val"] * n,
            "pool": ["N1"] * n,
            "confuser_category": [None] * n,
            "psfsize_r": np.full(n, 1.2),
            "psfdepth_r": np.full(n, 2e4),
            "ebv": np.full(n, 0.03),
            "healpix_128": np.zeros(n, dtype=int),
            "label": [0] * n,
            "tier": [None] * n,
            "sample_weight": np.ones(n),
        }
    )[team_columns]
    manifest.to_parquet(tmp_path / "m.parquet", index=False)
    ingest(tmp_path / "m.parquet", tmp_path / "shards", progress=False)
    pool = host_pool(manifest, "IM2")
    assert pool.galaxy_id.tolist() == ["t0", "t1", "t3", "t4"]
    result = LocalInjector(device="cpu").inject(
        ShardRows(str(tmp_path / "shards"), pool.index.tolist()),
        draw=PriorDraw("default", seed=4, cell="im2", theta_e=1.5, condition_on_host=True),
    )
    host_q, host_phi = host_moments(np.stack([read_cutout(real_cutout_paths[i]) for i in pool.index]))
    np.testing.assert_allclose(result.truth.host_q, host_q)
    np.testing.assert_allclose(result.truth.phi_lens, host_phi)
    assert (np.abs(result.truth.q_lens - np.clip(host_q, 0.5, 1.0)) <= 0.25).all()
    assert (np.hypot(result.truth.gamma1, result.truth.gamma2) <= 0.08).all()  # IM2: |gamma| U(0, 0.08)


def test_inject_adds_arcs_to_real_hosts_with_truth(real_cutout_paths: list[Path]) -> None:
    hosts = np.stack([read_cutout(p) for p in real_cutout_paths])
    drawn = _draw(6)
    result = inject(hosts, drawn)
    arcs = render_arcs(drawn)
    torch.testing.assert_close(result.images, torch.from_numpy(hosts) + arcs, equal_nan=True)
    truth = result.truth
    assert len(truth) == 6 and (truth.magnification > 1).all()
    flux_r = arcs[:, 1].double().sum(dim=(-2, -1)).numpy()
    np.testing.assert_allclose(truth.lensed_mag_r, 22.5 - 2.5 * np.log10(flux_r), rtol=1e-6)
    np.testing.assert_allclose(truth.magnification, flux_r / 10 ** (-0.4 * (truth.mag_r - 22.5)), rtol=2e-3)
    assert (truth.arc_snr_r > 0).all() and truth.arc_snr_r.notna().all()
    with pytest.raises(Exception, match="6 hosts but 2 parameter sets"):
        inject(hosts, drawn.slice(0, 2))
    noisy = inject(hosts, drawn, RenderSpec(poisson_gain=150.0), noise_keys=list(range(6)))
    again = inject(hosts, drawn, RenderSpec(poisson_gain=150.0), noise_keys=list(range(6)))
    torch.testing.assert_close(noisy.images, again.images, equal_nan=True)


def test_cli_sample_then_render_matches_library(tmp_path: Path) -> None:
    params_file, arcs_file = tmp_path / "p.json", tmp_path / "arcs.npy"
    run = subprocess.run(
        [*LENSCAL, "inject", "sample", "--out", str(params_file), "--n", "3", "--seed", "5"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    run = subprocess.run(
        [
            *LENSCAL,
            "inject",
            "render",
            "--params",
            str(params_file),
            "--out",
            str(arcs_file),
            "--oversample",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    expected = render_arcs(
        ArcParams.from_records(json.loads(params_file.read_text())), RenderSpec(oversample=2)
    )
    np.testing.assert_array_equal(np.load(arcs_file), expected.numpy())
    bad = subprocess.run(
        [*LENSCAL, "inject", "render", "--params", str(params_file), "--out", str(arcs_file), "--size", "4"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "size" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("correlation_px", [0.0, 0.7, 1.2])
def test_arc_snr_is_against_the_noise_the_aperture_sees(correlation_px: float) -> None:
    """The reported S/N matches the aperture sum's real noise, measured over 300 noise
    realisations; independent-pixel S/N would overstate it on correlated noise."""
    from scipy.ndimage import gaussian_filter

    from lenscal.injection.inject import arc_snr_and_eta

    params = sample_params(get_prior("default"), [1.5], np.full((1, 3), 1.2), seed=11)
    spec = RenderSpec()
    arcs = render_arcs(params, spec)
    rng = np.random.default_rng(0)

    def noise() -> np.ndarray:
        white = rng.normal(0.0, 0.01, (3, 101, 101))
        return (
            white
            if correlation_px == 0
            else gaussian_filter(white, (0, correlation_px, correlation_px), mode="wrap")
        )

    rows, cols = np.mgrid[0:101, 0:101]
    x, y = (cols - 50) * spec.pixel_scale, (rows - 50) * spec.pixel_scale
    p = params.records()[0]
    ring = np.abs(np.hypot(x - p["lens_x"], y - p["lens_y"]) - p["theta_e"]) <= p["psf_fwhm_r"]
    sums = np.array([noise()[1][ring].sum() for _ in range(300)])
    true_snr = float(arcs[0, 1].numpy()[ring].sum()) / sums.std()
    hosts = torch.from_numpy(np.stack([noise() for _ in range(8)]).astype(np.float32))
    snr, eta = arc_snr_and_eta(hosts, arcs.expand(8, -1, -1, -1), ArcParams.from_records([p] * 8), spec)
    assert np.median(snr[:, 1]) == pytest.approx(true_snr, rel=0.15)
    if correlation_px == 0:
        assert np.median(eta[:, 1]) == pytest.approx(1.0, abs=0.2)
    else:  # the independent-pixel S/N (eta = 1) overstates by sqrt(eta)
        assert np.median(snr[:, 1] * np.sqrt(eta[:, 1])) > 1.8 * true_snr
