"""Cutout I/O against np.load / astropy read by hand, and every bad-input error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from lenscal.data.cutouts import load_cutout, read_cutout, write_cutout_fits, write_cutout_npz
from lenscal.errors import CutoutError


def test_real_npz_cutouts_read_as_chw_float32(real_cutout_paths: list[Path]) -> None:
    for path in real_cutout_paths:
        raw = np.load(path)
        hwc = raw["cutout"]
        got = read_cutout(path)
        assert got.shape == (3, 101, 101) and got.dtype == np.float32
        for band in range(3):  # channel b of CHW is plane [:, :, b] of the team's HWC
            np.testing.assert_array_equal(got[band], hwc[:, :, band])
        cut = load_cutout(path)
        assert cut.meta["galaxy_id"] == str(raw["meta_galaxy_id"])
        assert cut.meta["ra"] == pytest.approx(float(raw["meta_ra"]))
        # NaN pixels are kept and counted; the team's file records its own per-band counts.
        expected = {b: int(raw[f"meta_nan_count_{b}"]) for b in "grz"}
        assert cut.nan_count_per_band == expected
        assert cut.nan_count == sum(expected.values())


def test_npz_write_read_round_trip_keeps_nan_and_meta(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cube = rng.normal(size=(3, 101, 101)).astype(np.float32)
    cube[1, 3:5, 7] = np.nan
    path = write_cutout_npz(tmp_path / "x.npz", cube, {"galaxy_id": "abc", "ra": 12.5, "tier": "A"})
    raw = np.load(path)
    assert raw["cutout"].shape == (101, 101, 3)  # the team's HWC layout on disk
    cut = load_cutout(path)
    np.testing.assert_array_equal(cut.data, cube)
    assert cut.nan_count == 2 and cut.nan_count_per_band == {"g": 0, "r": 2, "z": 0}
    assert cut.meta == {"galaxy_id": "abc", "ra": 12.5, "tier": "A"}


def test_fits_write_read_round_trip_and_header(tmp_path: Path, real_cutout_paths: list[Path]) -> None:
    cube = read_cutout(real_cutout_paths[0])
    path = write_cutout_fits(tmp_path / "x.fits", cube, ra=150.25, dec=2.5)
    with fits.open(path) as hdul:
        assert hdul[0].header["BANDS"] == "grz"
        np.testing.assert_array_equal(hdul[0].data, cube)
        wcs = WCS(hdul[0].header, naxis=2)
    # The centre pixel (0-based 50, 50) is the requested position; +x is east-negative (RA decreases).
    ra, dec = wcs.wcs_pix2world([[50.0, 50.0], [60.0, 50.0]], 0).T
    assert ra[0] == pytest.approx(150.25) and dec[0] == pytest.approx(2.5)
    assert (ra[1] - ra[0]) * 3600 * np.cos(np.radians(2.5)) == pytest.approx(-10 * 0.262, rel=1e-4)
    np.testing.assert_array_equal(read_cutout(path), cube)


def _fits_cube(path: Path, data: np.ndarray, **header: object) -> Path:
    hdu = fits.PrimaryHDU(data.astype(">f4"))  # FITS is big-endian on disk
    for key, value in header.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def test_fits_bands_are_reordered_and_extra_bands_dropped(tmp_path: Path) -> None:
    planes = {b: np.full((101, 101), v, np.float32) for v, b in enumerate("griz", start=1)}
    zrg = _fits_cube(tmp_path / "zrg.fits", np.stack([planes[b] for b in "zrg"]), BANDS="zrg")
    griz = _fits_cube(tmp_path / "griz.fits", np.stack([planes[b] for b in "griz"]), BANDS="griz")
    for path in (zrg, griz):
        got = read_cutout(path)
        assert got.dtype == np.float32 and got.dtype.byteorder in "=|<"
        np.testing.assert_array_equal(got[:, 0, 0], [1.0, 2.0, 4.0])  # g, r, z


@pytest.mark.parametrize(
    ("name", "data", "header", "message"),
    [
        ("missing_band.fits", np.zeros((2, 101, 101)), {"BANDS": "gr"}, "missing 'z'"),
        ("flat.fits", np.zeros((101, 101)), {}, "expected a (nbands, H, W) FITS cube"),
        ("four.fits", np.zeros((4, 101, 101)), {}, "4 bands and no BANDS header"),
        ("small.fits", np.zeros((3, 64, 64)), {"BANDS": "grz"}, "expected 101x101 px, got 64x64"),
        ("liar.fits", np.zeros((3, 101, 101)), {"BANDS": "grzi"}, "names 4 bands but the cube has 3"),
    ],
)
def test_bad_fits_is_refused_with_named_problem(
    tmp_path: Path, name: str, data: np.ndarray, header: dict[str, str], message: str
) -> None:
    path = _fits_cube(tmp_path / name, data, **header)
    with pytest.raises(CutoutError) as err:
        read_cutout(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_truncated_fits_and_npz_are_refused(tmp_path: Path, real_cutout_paths: list[Path]) -> None:
    cube = read_cutout(real_cutout_paths[0])
    for path in (write_cutout_fits(tmp_path / "t.fits", cube), write_cutout_npz(tmp_path / "t.npz", cube)):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CutoutError, match="unreadable or truncated") as err:
            read_cutout(path)
        assert str(path) in str(err.value)


def test_bad_npz_contents_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "nokey.npz", image=np.zeros((101, 101, 3), np.float32))
    np.savez(tmp_path / "chw.npz", cutout=np.zeros((3, 101, 101), np.float32))
    np.savez(tmp_path / "ints.npz", cutout=np.zeros((101, 101, 3), np.int16))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    cases = {
        "nokey.npz": "no 'cutout' array",
        "chw.npz": "must be (H, W, 3) HWC",
        "ints.npz": "must hold floats",
        "junk.npz": "unreadable or truncated",
    }
    for name, message in cases.items():
        with pytest.raises(CutoutError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_cutout(tmp_path / name)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CutoutError, match="unknown cutout format"):
        read_cutout(tmp_path / "x.png")
    with pytest.raises(CutoutError, match="no such cutout file"):
        read_cutout(tmp_path / "absent.fits")


def test_writers_refuse_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(CutoutError, match=r"must be \(3, H, W\) CHW"):
        write_cutout_npz(tmp_path / "x.npz", np.zeros((101, 101, 3)))
    with pytest.raises(CutoutError, match=r"must be \(3, H, W\) CHW"):
        write_cutout_fits(tmp_path / "x.fits", np.zeros((101, 101)))
    assert not list(tmp_path.iterdir())  # nothing half-written
