"""Record kinds and the team's naming convention, as rules the registry enforces.

- training: ``gen<N><letter?>`` (gen4, gen5a), ``resnet-gen<N>``, or a named config in
  snake case with at least one underscore (``paperIV_resnet18``, ``paired_baseline``);
- diagnostic: ``D<NN>`` (D05), or ``D<NN>_<YYYYMMDD>_<description>`` for another run of
  one (a preset, a rerun: D05_20261202_demo; lenscal.registry.identity);
- evaluation: ``E<NN>-<suffix>`` (E04-IM1, E04-eval);
- injection_model: ``IM<N>`` (IM2).

IDs are ASCII and at most 64 characters: look-alike digits and letters from other
scripts (``D٠٥``, ``gen５``) would make two records that read the same.
Results live in ``results/<RunID>_<YYYYMMDD>_<description>/``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from lenscal.errors import LenscalError
from lenscal.workspace import run_name

MAX_ID_LENGTH = 64


class RegistryError(LenscalError):
    """A registry request is invalid: bad ID, unknown record, illegal status change."""


@dataclass(frozen=True)
class Kind:
    name: str
    patterns: tuple[str, ...]
    rule: str
    default_status: str

    def matches(self, run_id: str) -> bool:
        return (
            run_id.isascii()
            and len(run_id) <= MAX_ID_LENGTH
            and any(re.fullmatch(p, run_id, flags=re.ASCII) for p in self.patterns)
        )


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "training",
            (r"gen\d+[a-z]?", r"resnet-gen\d+[a-z]?", r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)+"),
            "gen<N><letter?> (gen5a), resnet-gen<N> (resnet-gen2), or a snake_case config name "
            "with an underscore (paperIV_resnet18)",
            "Not trained",
        ),
        Kind(
            "diagnostic",
            (r"D\d{2}", r"D\d{2}_\d{8}_[a-z0-9][a-z0-9_]*"),
            "D<NN>: 'D' and two digits (D05), or a run of one at a preset or on a date: "
            "D<NN>_<YYYYMMDD>_<description> (D05_20261202_demo)",
            "Running",
        ),
        Kind(
            "evaluation",
            (r"E\d{2}-[A-Za-z0-9][A-Za-z0-9_-]*",),
            "E<NN>-<suffix>: 'E', two digits, '-', a suffix of letters, digits, '_' or '-' (E04-IM1)",
            "Running",
        ),
        Kind("injection_model", (r"IM\d+",), "IM<N>: 'IM' and a number (IM2)", "Active"),
    )
}

STATUSES: tuple[str, ...] = (
    "Not trained",
    "Running",
    "Trained",
    "Complete",
    "Failed",
    "Invalidated",
    "Active",
)
#: Spellings found in hand-kept registries, mapped to lenscal's statuses.
STATUS_ALIASES: dict[str, str] = {"completed": "Complete", "done": "Complete", "not_trained": "Not trained"}


def check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise RegistryError(f"unknown record kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[kind]


def check_id(kind: str, run_id: str) -> str:
    """Return run_id if it follows the rule of ``kind``, else raise a RegistryError stating the rule."""
    k = check_kind(kind)
    if not run_id.isascii():
        bad = next(ch for ch in run_id if not ch.isascii())
        raise RegistryError(
            f"bad {kind} ID {run_id!r}: IDs are ASCII only (found {bad!r}, U+{ord(bad):04X}); "
            f"the rule is {k.rule}"
        )
    if len(run_id) > MAX_ID_LENGTH:
        raise RegistryError(
            f"bad {kind} ID: {len(run_id)} characters, at most {MAX_ID_LENGTH}; the rule is {k.rule}"
        )
    if not k.matches(run_id):
        guess = kind_of(run_id)
        hint = f"; {run_id!r} looks like a {guess} ID" if guess and guess != kind else ""
        raise RegistryError(f"bad {kind} ID {run_id!r}: the rule is {k.rule}{hint}")
    return run_id


#: Kinds tried by kind_of, the most specific rule first: a run of a diagnostic
#: (D05_20261202_demo) also reads as a snake_case training name.
SPECIFIC_FIRST = ("diagnostic", "evaluation", "injection_model", "training")


def kind_of(run_id: str) -> str | None:
    """The kind whose rule ``run_id`` follows (None if none does)."""
    return next((k for k in SPECIFIC_FIRST if KINDS[k].matches(run_id)), None)


def check_status(status: str) -> str:
    canonical = STATUS_ALIASES.get(status.strip().lower().replace(" ", "_"), status.strip())
    for s in STATUSES:
        if s.lower() == canonical.lower():
            return s
    raise RegistryError(f"unknown status {status!r}; statuses: {', '.join(STATUSES)}")


def results_dir_name(run_id: str, date: dt.date, description: str) -> str:
    """``<RunID>_<YYYYMMDD>_<description>``; description: lowercase letters, digits, '_'."""
    if kind_of(run_id) is None:
        raise RegistryError(f"{run_id!r} is not a registry ID (see `lenscal registry add --help`)")
    if not re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", description):
        raise RegistryError(
            f"results description {description!r} must be lowercase letters and digits joined by '_'"
        )
    return run_name(run_id, description, date)
