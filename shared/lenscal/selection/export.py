"""A selection function as astropy tables anyone can read without lenscal.

One table per threshold, one row per cell: each axis's bin ``_low``, ``_centre``, ``_high``
(theta_e and psf_fwhm in arcsec, depth and magnitudes in mag, AB: FITS has no unit for AB
magnitudes, so the unit is ``mag`` and MAGSYS = 'AB' says which), k, n, completeness, the
Jeffreys 68% and 95% limits and ``no_data`` (n = 0: completeness NaN, never 0).

- ``.fits``: a primary HDU holding the provenance (short keywords with comments, and all of
  it as JSON in PROVJSON), then one BINTABLE per threshold, EXTNAME the threshold label
  (``p>=0.5``, ``fpr=0.001``), with THRESH, THRVAL, THRRULE, FORCED;
- ``.ecsv``: one table, every threshold stacked (a ``threshold`` column), the provenance in
  its YAML meta;
- ``.h5`` / ``.hdf5``: one dataset per threshold (path = the label; astropy keeps each one's
  units and meta beside it in ``<label>.__table_column_meta__``), read with
  ``Table.read(path, path=label)`` (needs h5py: ``pip install 'lenscal[hdf5]'``).

Written to a temporary name and renamed: a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lenscal.fsutil import atomic_path
from lenscal.selection.config import GridError
from lenscal.selection.function import SelectionFunction, citation

FORMATS = {".fits": "fits", ".fit": "fits", ".ecsv": "ascii.ecsv", ".h5": "hdf5", ".hdf5": "hdf5"}
#: FITS keyword -> (provenance path, comment)
FITS_KEYWORDS = {
    "GRID": ("grid", "lenscal grid name"),
    "PRESET": ("preset", "grid preset"),
    "DEFSHA": ("definition_sha256", "sha256 of the grid definition"),
    "GEOSHA": ("geometry_sha256", "sha256 of the grid geometry"),
    "MODEL": ("checkpoint.model", "finder (model name)"),
    "MODELID": ("checkpoint.model_id", "finder registry ID"),
    "ARCH": ("checkpoint.architecture", "finder architecture"),
    "BUNDSHA": ("checkpoint.bundle_sha256", "sha256 of the model bundle"),
    "WGHTSHA": ("checkpoint.weights_sha256", "sha256 of the weights"),
    "INJMODEL": ("injection_model", "host selection: IM1 or IM2"),
    "PRIOR": ("prior.name", "injection prior"),
    "PRIORSHA": ("prior.sha256", "sha256 of the prior's content"),
    "PERCELL": ("per_cell", "injections per cell"),
    "NINJ": ("injections", "injections in the run"),
    "SEED": ("seed", "run seed"),
    "HOSTBIN": ("host_binning", "how hosts join PSF x depth bins"),
    "HOSTSHA": ("hosts.shards_sha256", "sha256 of the host shards"),
    "MOCK": ("mock_hosts", "hosts from the mock survey"),
    "LCVERS": ("lenscal_version", "lenscal version"),
}


def _get(prov: dict[str, Any], dotted: str) -> Any:
    value: Any = prov
    for part in dotted.split("."):
        value = (value or {}).get(part) if isinstance(value, dict) else None
    return value


def threshold_table(sf: SelectionFunction, threshold: str) -> Any:
    """The astropy Table of one threshold."""
    import astropy.units as u
    from astropy.table import Table

    k = sf.counts(threshold)
    index = np.indices(sf.shape).reshape(len(sf.shape), -1)
    table = Table()
    for axis, where in zip(sf.axes, index, strict=True):
        unit = u.Unit(axis.unit)
        for part, values in (("low", axis.low), ("centre", axis.centres), ("high", axis.high)):
            table[f"{axis.name}_{part}"] = values[where] * unit
            table[f"{axis.name}_{part}"].description = f"{axis.description}: bin {part}"
    kk, nn = k.ravel(), sf.n.ravel()
    table["k"], table["n"] = kk.astype(np.int64), nn.astype(np.int64)
    table["k"].description = "injections detected (probability >= threshold)"
    table["n"].description = "injections made"
    centres = [table[f"{a}_centre"].value for a in sf.axis_names]
    point = sf.completeness(
        *centres[:3], magnitude=centres[3] if len(centres) == 4 else None, threshold=threshold
    )
    table["completeness"] = point.estimate
    table["completeness"].description = "k / n (NaN where n = 0)"
    for name, values in (
        ("jeffreys68_low", point.low68), ("jeffreys68_high", point.high68),
        ("jeffreys95_low", point.low95), ("jeffreys95_high", point.high95),
    ):  # fmt: skip
        table[name] = values
        table[name].description = "Jeffreys equal-tailed limit, Beta(k + 1/2, n - k + 1/2)"
    table["no_data"] = nn == 0
    table["no_data"].description = "no injections in this cell: completeness unknown, not 0"
    rule = sf.provenance.get("thresholds", {}).get(threshold, {})
    table.meta.update(
        threshold=threshold,
        threshold_value=sf.thresholds[threshold],
        threshold_rule=rule.get("rule", ""),
        forced=bool(rule.get("forced", False)),
    )
    return table


def export(sf: SelectionFunction, out: str | Path) -> Path:
    """Write ``sf`` to ``out`` in the format its suffix names (.fits, .ecsv, .h5)."""
    out = Path(out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise GridError(f"{out}: unknown format {out.suffix!r}; use one of {', '.join(sorted(FORMATS))}")
    if fmt == "hdf5":
        try:
            import h5py  # noqa: F401
        except ImportError:
            raise GridError(f"{out}: HDF5 export needs h5py (pip install 'lenscal[hdf5]')") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = {label: threshold_table(sf, label) for label in sf.thresholds}
    with atomic_path(out) as tmp:
        {"fits": _fits, "ascii.ecsv": _ecsv, "hdf5": _hdf5}[fmt](sf, tables, Path(tmp))
    return out


def _meta(sf: SelectionFunction) -> dict[str, Any]:
    return {
        "provenance": sf.provenance,
        "citation": citation(sf.provenance),
        "axes": {a.name: {"unit": a.unit, "description": a.description} for a in sf.axes},
        "magnitude_system": "AB",
    }


def _fits(sf: SelectionFunction, tables: dict[str, Any], path: Path) -> None:
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    primary = fits.PrimaryHDU()
    header = primary.header
    header["ORIGIN"] = ("lenscal", "selection function export")
    header["MAGSYS"] = ("AB", "magnitudes (depth, *_mag) are AB")
    for key, (dotted, comment) in FITS_KEYWORDS.items():
        value = _get(sf.provenance, dotted)
        if value is not None:
            header[key] = (value if isinstance(value, bool | int | float) else str(value)[:68], comment)
    header["AXES"] = (",".join(sf.axis_names), "cell axes, slowest first")
    header["INTERVAL"] = ("Jeffreys", "equal-tailed Beta(k+1/2, n-k+1/2), 68% and 95%")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # long strings go out as CONTINUE cards
        header["PROVJSON"] = json.dumps(_meta(sf), sort_keys=True)
        hdus: list[Any] = [primary]
        for label, table in tables.items():
            hdu = fits.table_to_hdu(table)
            for key in ("threshold", "threshold_value", "threshold_rule", "forced"):
                hdu.header.remove(key.upper(), ignore_missing=True)
            hdu.header["EXTNAME"] = label
            hdu.header["THRESH"] = (label, "detection threshold label")
            hdu.header["THRVAL"] = (table.meta["threshold_value"], "probability at or above which detected")
            hdu.header["THRRULE"] = table.meta["threshold_rule"]
            hdu.header["FORCED"] = (table.meta["forced"], "FPR threshold on too few negatives")
            hdu.header["MAGSYS"] = ("AB", "magnitudes are AB")
            hdus.append(hdu)
        fits.HDUList(hdus).writeto(path)


def _ecsv(sf: SelectionFunction, tables: dict[str, Any], path: Path) -> None:
    from astropy.table import vstack

    stacked = []
    for label, table in tables.items():
        t = table.copy()
        t.meta = {}
        t.add_column([label] * len(t), name="threshold", index=0)
        t.add_column([table.meta["threshold_value"]] * len(t), name="threshold_value", index=1)
        t.add_column([table.meta["forced"]] * len(t), name="forced", index=2)
        stacked.append(t)
    table = vstack(stacked, metadata_conflicts="silent")
    table.meta = _meta(sf)
    table.write(path, format="ascii.ecsv")


def _hdf5(sf: SelectionFunction, tables: dict[str, Any], path: Path) -> None:
    meta = _meta(sf)
    for label, table in tables.items():
        t = table.copy()
        t.meta = {**meta, **table.meta}
        t.write(path, format="hdf5", path=label, serialize_meta=True, append=True)
