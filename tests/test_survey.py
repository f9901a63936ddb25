"""Survey formulas against the hand-computed values in the team's DOMAIN reference."""

import numpy as np
import pytest

from lenscal.survey import (
    m5_from_psfdepth,
    m5_from_psfdepths,
    pixel_noise_sigma,
    psf_sigma_pixels,
    psfdepth_from_m5,
)


def test_pixel_noise_matches_domain_example() -> None:
    # docs/science.md, "Survey conventions": m5 = 23.5, FWHM 1.2" -> sigma_pix ~ 0.0115 nmgy.
    assert pixel_noise_sigma(psfdepth_from_m5(23.5), 1.2) == pytest.approx(0.0115, abs=5e-5)


def test_depth_conversions_by_hand() -> None:
    # m5 = 22.5 -> 5 / sqrt(psfdepth) = 1 nmgy -> psfdepth = 25.
    assert psfdepth_from_m5(22.5) == pytest.approx(25.0)
    assert m5_from_psfdepth(25.0) == pytest.approx(22.5)
    assert m5_from_psfdepth(psfdepth_from_m5(24.1)) == pytest.approx(24.1)
    # FWHM = 2.3548 sigma; 0.262"/px.
    assert psf_sigma_pixels(2.3548 * 0.262) == pytest.approx(1.0, rel=1e-4)


def test_m5_of_many_psfdepths_is_the_scalar_conversion_bit_for_bit() -> None:
    values = np.array([25.0, psfdepth_from_m5(24.1), 0.0, -3.0, np.nan, 1234.5678])
    m5 = m5_from_psfdepths(values)
    assert m5[0] == pytest.approx(22.5) and m5[1] == pytest.approx(24.1)
    assert np.isnan(m5[2:5]).all()  # no coverage: missing, never an error
    # Exactly the scalar conversion, so catalogue objects bin as every grid's hosts did (a
    # numpy log10 differs in the last bit for ~1% of values: ~80 of these)
    many = np.random.default_rng(0).uniform(1.0, 5e4, 10_000)
    assert np.array_equal(m5_from_psfdepths(many), [m5_from_psfdepth(v) for v in many])
