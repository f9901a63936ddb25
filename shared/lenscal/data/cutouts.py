"""Cutout files -> (3, H, W) float32 CHW arrays in nanomaggies, bands g, r, z.

Formats (chosen by file suffix, see ``READERS``):
- Legacy Survey cutout-service FITS cube: primary HDU ``(nbands, H, W)`` with header
  ``BANDS`` (e.g. ``'grz'``) or ``BAND0..``; extra bands are dropped, a missing band is an error.
- The research team's NPZ: key ``cutout`` of shape ``(H, W, 3)`` (HWC, g, r, z) plus
  scalar ``meta_*`` keys, returned as ``Cutout.meta`` without the prefix.

NaN pixels are legal (masked or uncovered) and are kept; ``Cutout.nan_count`` counts them.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenscal.errors import CutoutError
from lenscal.fsutil import atomic_path
from lenscal.survey import BANDS, CUTOUT_SIZE, PIXEL_SCALE_ARCSEC

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Cutout:
    """A cutout as read from disk: ``data`` is (3, H, W) float32 nmgy in g, r, z order."""

    data: np.ndarray
    path: Path
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def nan_count(self) -> int:
        return int(np.isnan(self.data).sum())

    @property
    def nan_count_per_band(self) -> dict[str, int]:
        return {b: int(np.isnan(self.data[i]).sum()) for i, b in enumerate(BANDS)}


def read_cutout(path: PathLike, *, size: int | None = CUTOUT_SIZE) -> np.ndarray:
    """Read a cutout file as a (3, size, size) float32 CHW array in nanomaggies.

    ``size=None`` accepts any square cutout. Raises CutoutError naming the file and problem.
    """
    return load_cutout(path, size=size).data


def load_cutout(path: PathLike, *, size: int | None = CUTOUT_SIZE) -> Cutout:
    """Like read_cutout, but also returns the file's metadata."""
    p = Path(path)
    reader = _reader_for(p)
    if not p.is_file():
        raise CutoutError(f"{p}: no such cutout file")
    data, meta = reader(p)
    _check_chw(p, data, size)
    return Cutout(data=np.ascontiguousarray(data, dtype=np.float32), path=p, meta=meta)


def write_cutout_npz(path: PathLike, data: np.ndarray, meta: Mapping[str, Any] | None = None) -> Path:
    """Write the team's NPZ format: ``cutout`` as (H, W, 3) float32 plus ``meta_<key>`` scalars."""
    p = Path(path)
    chw = _as_chw_float32(p, data)
    arrays: dict[str, Any] = {"cutout": np.ascontiguousarray(chw.transpose(1, 2, 0))}
    for key, value in (meta or {}).items():
        if not np.isscalar(value) and value is not None:
            raise CutoutError(f"{p}: meta[{key!r}] must be a scalar, got {type(value).__name__}")
        arrays[f"meta_{key}"] = np.asarray(value)
    with atomic_path(p) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return p


def write_cutout_fits(
    path: PathLike,
    data: np.ndarray,
    *,
    ra: float | None = None,
    dec: float | None = None,
    pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC,
    header: Mapping[str, Any] | None = None,
) -> Path:
    """Write a Legacy-Survey-style FITS cube: primary HDU (3, H, W) float32, ``BANDS='grz'``,
    and a TAN WCS centred on (ra, dec) [deg] when both are given."""
    from astropy.io import fits

    p = Path(path)
    chw = _as_chw_float32(p, data)
    hdu = fits.PrimaryHDU(chw)
    hdr = hdu.header
    hdr["BANDS"] = ("".join(BANDS), "bands along axis 3 (NAXIS3)")
    for i, band in enumerate(BANDS):
        hdr[f"BAND{i}"] = band
    hdr["BUNIT"] = ("nanomaggy", "AB mag = 22.5 - 2.5 log10(flux)")
    if ra is not None and dec is not None:
        size_y, size_x = chw.shape[1:]
        hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
        hdr["CRVAL1"], hdr["CRVAL2"] = float(ra), float(dec)
        # FITS pixels are 1-based: the centre of an odd-sized cutout is (size + 1) / 2.
        hdr["CRPIX1"], hdr["CRPIX2"] = (size_x + 1) / 2.0, (size_y + 1) / 2.0
        hdr["CD1_1"], hdr["CD1_2"] = -pixel_scale_arcsec / 3600.0, 0.0
        hdr["CD2_1"], hdr["CD2_2"] = 0.0, pixel_scale_arcsec / 3600.0
    for key, value in (header or {}).items():
        hdr[key] = value
    with atomic_path(p) as tmp:
        hdu.writeto(tmp, overwrite=True)
    return p


# --- readers -----------------------------------------------------------------------------


def _read_fits(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            # astropy only *warns* about a truncated file and may hand back padded data.
            warnings.filterwarnings("error", message=".*truncated.*")
            with fits.open(path, memmap=False) as hdul:
                hdu = next((h for h in hdul if getattr(h, "data", None) is not None), None)
                if hdu is None:
                    raise CutoutError(f"{path}: FITS file has no image data in any HDU")
                data = np.array(hdu.data, dtype=np.float32)  # native byte order
                header = hdu.header.copy()
    except CutoutError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, warnings-as-errors, ...
        raise CutoutError(f"{path}: unreadable or truncated FITS file ({exc})") from exc
    if data.ndim != 3:
        raise CutoutError(f"{path}: expected a (nbands, H, W) FITS cube, got shape {data.shape}")
    bands = _fits_bands(path, header, data.shape[0])
    try:
        order = [bands.index(b) for b in BANDS]
    except ValueError:
        missing = [b for b in BANDS if b not in bands]
        raise CutoutError(
            f"{path}: FITS cube has bands {''.join(bands)!r}, missing {''.join(missing)!r} "
            f"(lenscal needs {''.join(BANDS)!r})"
        ) from None
    meta = {k.lower(): header[k] for k in ("RA", "DEC", "CRVAL1", "CRVAL2") if k in header}
    meta["bands_in_file"] = "".join(bands)
    return data[order], meta


def _fits_bands(path: Path, header: Any, nbands: int) -> list[str]:
    if "BANDS" in header:
        bands = list(str(header["BANDS"]).strip())
    elif "BAND0" in header:
        bands = [str(header.get(f"BAND{i}", "?")).strip() for i in range(nbands)]
    elif nbands == len(BANDS):
        bands = list(BANDS)  # the cutout service always writes BANDS; assume g, r, z order
    else:
        raise CutoutError(
            f"{path}: FITS cube has {nbands} bands and no BANDS header; expected {len(BANDS)} (g, r, z)"
        )
    if len(bands) != nbands:
        raise CutoutError(
            f"{path}: header BANDS={''.join(bands)!r} names {len(bands)} bands but the cube has {nbands}"
        )
    return bands


#: numpy parses every .npy header with ast.literal_eval, and CPython 3.11 before 3.11.8 can
#: fail ast parsing run in several threads at once ("SystemError: AST constructor recursion
#: depth mismatch", gh-106905): reader threads fetch the bytes in parallel, parse one at a time.
NPY_PARSE_LOCK = threading.Lock()


def _read_npz(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        raw = io.BytesIO(path.read_bytes())
        with NPY_PARSE_LOCK, np.load(raw, allow_pickle=False) as npz:
            if "cutout" not in npz.files:
                raise CutoutError(f"{path}: NPZ has no 'cutout' array (keys: {sorted(npz.files)})")
            hwc = npz["cutout"]
            meta = {k[len("meta_") :]: npz[k].item() for k in npz.files if k.startswith("meta_")}
    except CutoutError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CutoutError(f"{path}: unreadable or truncated NPZ file ({exc})") from exc
    if hwc.ndim != 3 or hwc.shape[-1] != len(BANDS):
        raise CutoutError(
            f"{path}: NPZ 'cutout' must be (H, W, {len(BANDS)}) HWC in g, r, z order, got shape {hwc.shape}"
        )
    if not np.issubdtype(hwc.dtype, np.floating):
        raise CutoutError(f"{path}: NPZ 'cutout' must hold floats (nanomaggies), got {hwc.dtype}")
    return hwc.transpose(2, 0, 1), meta


READERS: dict[str, Callable[[Path], tuple[np.ndarray, dict[str, Any]]]] = {
    ".fits": _read_fits,
    ".fit": _read_fits,
    ".fits.gz": _read_fits,
    ".fits.fz": _read_fits,
    ".npz": _read_npz,
}


def _reader_for(path: Path) -> Callable[[Path], tuple[np.ndarray, dict[str, Any]]]:
    name = path.name.lower()
    for suffix in sorted(READERS, key=len, reverse=True):
        if name.endswith(suffix):
            return READERS[suffix]
    raise CutoutError(f"{path}: unknown cutout format; supported suffixes: {', '.join(READERS)}")


def _check_chw(path: Path, data: np.ndarray, size: int | None) -> None:
    if data.shape[0] != len(BANDS):
        raise CutoutError(f"{path}: expected {len(BANDS)} bands (g, r, z), got {data.shape[0]}")
    height, width = data.shape[1:]
    if height != width:
        raise CutoutError(f"{path}: cutout is not square: {height}x{width} px")
    if size is not None and (height, width) != (size, size):
        raise CutoutError(f"{path}: expected {size}x{size} px, got {height}x{width}")


def _as_chw_float32(path: Path, data: np.ndarray) -> np.ndarray:
    arr = np.asarray(data)
    if arr.ndim != 3 or arr.shape[0] != len(BANDS):
        raise CutoutError(f"{path}: data to write must be ({len(BANDS)}, H, W) CHW, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)
