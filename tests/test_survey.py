"""Survey formulas against the hand-computed values in the team's DOMAIN reference."""

import pytest

from lenscal.survey import m5_from_psfdepth, pixel_noise_sigma, psf_sigma_pixels, psfdepth_from_m5


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
