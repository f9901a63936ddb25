"""The experiment registry: one source of truth for runs, rendered as the team's markdown."""

from lenscal.registry.ids import KINDS, STATUSES, RegistryError, check_id, kind_of, results_dir_name
from lenscal.registry.store import Record, Registry, default_url

__all__ = [
    "KINDS",
    "STATUSES",
    "Record",
    "Registry",
    "RegistryError",
    "check_id",
    "default_url",
    "kind_of",
    "results_dir_name",
]
