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
    shear = np.hypot(drawn.gamma1, drawn.gamma2)
    assert shear.mean() == pytest.approx(0.05 * np.sqrt(2 / np.pi), rel=0.05)  # half-normal mean


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
            "split": ["val", "val", "train", "val"],
            "label": [0, 0, 0, 1],
            "type": ["DEV", "EXP", "DEV", "DEV"],
            "flux_g": [0.5, 0.5, 0.5, 0.5],
            "flux_r": [2.0, 2.0, 2.0, 2.0],
            "flux_z": [8.0, 8.0, 8.0, 8.0],  # z = 20.24 < 20.4; r - z = 1.5; g - r = 1.5
            "shape_e1": [0.1, 0.0, 0.0, 0.0],
            "shape_e2": [0.0, 0.0, 0.0, 0.0],
            "psfsize_r": [1.0, 1.2, 1.1, 1.3],
            "psfsize_g": [np.nan, 1.5, 1.4, 1.3],
        }
    )
    assert host_pool(manifest, "IM1").index.tolist() == [0, 1]
    im2 = host_pool(manifest, "IM2")
    assert im2.index.tolist() == [0] and im2.host_q.iloc[0] == pytest.approx(0.9 / 1.1)
    np.testing.assert_allclose(host_psf_fwhm(manifest.iloc[:2]), [[1.05, 1.0, 0.94], [1.5, 1.2, 1.2 * 0.94]])


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
