"""The prior the team's D01-D05 and E04 ran with (their engine's defaults before the
2026-02-16 fixes), and their clump model, against the distributions their
sample_source_params states and a re-derivation of their ``_add_clumps`` formula with
lenstronomy's ray tracing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenscal.injection.inject import inject
from lenscal.injection.priors import PRIORS, get_prior, sample_params
from lenscal.physics import ArcParams, RenderSpec, render_arcs


@pytest.fixture(scope="module")
def draws() -> tuple[ArcParams, np.ndarray]:
    n = 6000
    theta = np.full(n, 1.5)
    params = sample_params(
        get_prior("team_d01_d05"), theta, np.tile([1.4, 1.3, 1.2], (n, 1)), seed=7, cell="t"
    )
    return params, theta


def test_team_prior_draws_follow_the_stated_distributions(draws: tuple[ArcParams, np.ndarray]) -> None:
    params, theta = draws
    n = len(params)
    q = params.q_src.numpy()
    r_e_major = params.r_e.numpy() / np.sqrt(q)  # R_e U(0.05, 0.5) along the major axis
    assert r_e_major.min() >= 0.05 and r_e_major.max() <= 0.5
    assert abs(r_e_major.mean() - 0.275) < 0.01
    sersic = params.n_sersic.numpy()
    assert sersic.min() >= 0.5 and sersic.max() <= 4.0 and abs(sersic.mean() - 2.25) < 0.05
    g_r = (params.mag_g - params.mag_r).numpy()
    r_z = (params.mag_r - params.mag_z).numpy()
    se = 0.25 / np.sqrt(n)
    assert abs(g_r.mean() - 0.2) < 4 * se and abs(g_r.std() - 0.25) < 0.01
    assert abs(r_z.mean() - 0.1) < 4 * se and abs(r_z.std() - 0.25) < 0.01
    beta = np.hypot((params.src_x - params.lens_x).numpy(), (params.src_y - params.lens_y).numpy()) / theta
    assert beta.min() >= 0.1 - 1e-9 and beta.max() <= 1.0 + 1e-9
    # area-weighted: P(beta_frac < 0.55) = (0.55^2 - 0.1^2) / (1 - 0.1^2) = 29.5% (the team's figure)
    assert abs((beta < 0.55).mean() - 0.2955) < 0.02
    mix = params.clump_mix
    assert mix is not None and params.clumps is not None
    clumped = (mix > 0).numpy()
    assert abs(clumped.mean() - 0.6) < 4 * np.sqrt(0.24 / n)
    m = mix.numpy()[clumped]
    assert m.min() >= 0.15 and m.max() <= 0.45
    counts = (params.clumps[..., 3] > 0).sum(-1).numpy()[clumped]
    assert set(np.unique(counts)) == {1, 2, 3}  # numpy integers(1, 4), as their engine drew
    weights = params.clumps[..., 3].sum(-1).numpy()[clumped]
    assert (weights <= 1.0).all() and (weights > 1 - 1e-4).all()  # w / (sum w + 1e-8), as theirs
    sigma = params.clumps[..., 2].numpy()[clumped, 0]
    np.testing.assert_allclose(sigma, np.clip(0.25 * r_e_major[clumped], 0.02, 0.15))
    # offsets: N(0, 0.6 R_e) along the source's major axis, N(0, 0.6 R_e q) across it
    first = params.clumps[:, 0].numpy()[clumped]
    phi = params.phi_src.numpy()[clumped]
    along = np.cos(phi) * first[:, 0] + np.sin(phi) * first[:, 1]
    across = -np.sin(phi) * first[:, 0] + np.cos(phi) * first[:, 1]
    assert abs(np.std(along / (0.6 * r_e_major[clumped])) - 1.0) < 0.05
    assert abs(np.std(across / (0.6 * r_e_major[clumped] * q[clumped])) - 1.0) < 0.05
    # lenscal's own runs keep today's priors
    assert PRIORS["default"].source_params.clumps_prob == 0.0


def test_team_clump_render_matches_their_formula() -> None:
    """One clumped source rendered through lenscal against the team's mixing written out here:
    C from lenstronomy's ray tracing of the pixel centres, (1 - m) U + m (mean U + std U C)."""
    pytest.importorskip("lenstronomy", reason="lenstronomy is in the dev extra")
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.Util import param_util

    base = {
        "theta_e": 1.3, "q_lens": 0.75, "phi_lens": 0.4, "lens_x": 0.03, "lens_y": -0.02, "gamma1": 0.03,
        "gamma2": -0.02, "src_x": 0.25, "src_y": 0.1, "r_e": 0.3, "n_sersic": 1.5, "q_src": 0.6,
        "phi_src": 1.1, "mag_g": 21.2, "mag_r": 21.0, "mag_z": 20.9,
        # a PSF far below a pixel: the rendered image is the pixel image itself
        "psf_fwhm_g": 0.005, "psf_fwhm_r": 0.005, "psf_fwhm_z": 0.005,
    }  # fmt: skip
    clumps = [[0.12, -0.05, 0.07, 0.5], [-0.08, 0.1, 0.07, 0.3], [0.02, 0.02, 0.07, 0.2]]
    mix = 0.35
    spec = RenderSpec(oversample=4)
    clumped = render_arcs(ArcParams.from_records([{**base, "clumps": clumps, "clump_mix": mix}]), spec)[0]
    smooth = render_arcs(ArcParams.from_records([base]), spec)[0].double().numpy()

    size, s = spec.size, spec.pixel_scale
    coords = (np.arange(size) - (size - 1) / 2) * s
    x, y = np.meshgrid(coords, coords)
    e1, e2 = param_util.phi_q2_ellipticity(base["phi_lens"], base["q_lens"])
    lens = LensModel(["SIE", "SHEAR"])
    kwargs = [
        {
            "theta_E": base["theta_e"],
            "e1": e1,
            "e2": e2,
            "center_x": base["lens_x"],
            "center_y": base["lens_y"],
        },
        {"gamma1": base["gamma1"], "gamma2": base["gamma2"], "ra_0": base["lens_x"], "dec_0": base["lens_y"]},
    ]
    bx, by = lens.ray_shooting(x.ravel(), y.ravel(), kwargs)
    bx, by = bx.reshape(size, size), by.reshape(size, size)
    c = np.zeros((size, size))
    for dx, dy, sigma, weight in clumps:
        cx, cy = base["src_x"] + dx, base["src_y"] + dy
        c += weight * np.exp(-((bx - cx) ** 2 + (by - cy) ** 2) / (2 * sigma**2 + 1e-12))
    c /= c.max() + 1e-8
    for band in range(3):
        u = smooth[band]
        expected = (1 - mix) * u + mix * (u.mean() + u.std(ddof=1) * c)
        got = clumped[band].double().numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * expected.max())
        # flux is not conserved: the stamp gains m std(U) sum(C)
        np.testing.assert_allclose(got.sum() - u.sum(), mix * u.std(ddof=1) * c.sum(), rtol=1e-3)


def test_truth_records_the_clumps(draws: tuple[ArcParams, np.ndarray]) -> None:
    params = draws[0].slice(0, 12)
    truth = inject(torch.zeros((12, 3, 101, 101)), params).truth
    mix = params.clump_mix.numpy()  # type: ignore[union-attr]
    counts = (params.clumps[..., 3] > 0).sum(-1).numpy()  # type: ignore[index]
    np.testing.assert_array_equal(truth["n_clumps"], np.where(mix > 0, counts, 0))
    np.testing.assert_allclose(truth["clump_fraction"], mix)
    assert set(truth["clump_model"]) <= {"team", "none"}
    assert (truth.loc[mix > 0, "clump_flux_r"] > 0).all() and (truth.loc[mix == 0, "clump_flux_r"] == 0).all()


def test_sampled_parameter_files_keep_the_clumps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`lenscal inject sample` writes each arc's clumps and mixing fraction, so `inject render`
    of the file renders what the prior drew."""
    import json
    import subprocess

    from .conftest import LENSCAL

    params_file, arcs_file = tmp_path / "p.json", tmp_path / "a.npy"
    for command in (
        ["inject", "sample", "--out", str(params_file), "--n", "6", "--prior", "team_d01_d05", "--seed", "1"],
        ["inject", "render", "--params", str(params_file), "--out", str(arcs_file)],
    ):
        done = subprocess.run([*LENSCAL, *command], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    rows = json.loads(params_file.read_text())
    assert any(row.get("clump_mix", 0) > 0 and row["clumps"] for row in rows)
    expected = render_arcs(ArcParams.from_records(rows), RenderSpec()).numpy()
    np.testing.assert_array_equal(np.load(arcs_file), expected)
    fwhm = np.tile([1.2 * 1.05, 1.2, 1.2 * 0.94], (6, 1))
    drawn = sample_params(get_prior("team_d01_d05"), np.full(6, 1.5), fwhm, seed=1, cell="")
    np.testing.assert_allclose(render_arcs(drawn, RenderSpec()).numpy(), expected)
