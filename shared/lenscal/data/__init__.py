"""Cutout formats, manifests, packed shards and HEALPix splits."""

from lenscal.data.cutouts import (
    Cutout,
    load_cutout,
    read_cutout,
    write_cutout_fits,
    write_cutout_npz,
)
from lenscal.data.manifest import read_manifest, validate_manifest, write_manifest

__all__ = [
    "Cutout",
    "load_cutout",
    "read_cutout",
    "read_manifest",
    "validate_manifest",
    "write_cutout_fits",
    "write_cutout_npz",
    "write_manifest",
]
