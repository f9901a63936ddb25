"""A run's results directory, the one definition shared by grids, diagnostics, survey
scoring, training and the flows.

- **Named** ``<RunID>_<YYYYMMDD>_<description>`` (``run_name``); ``find_run_directory``
  reuses the newest directory of the same run, so a rerun resumes it.
- **Claimed by its definition hash.** ``canonical_sha256`` is the one hash of a definition;
  ``claim`` refuses to resume a directory that holds a run of another definition (``--restart``
  discards it). Its JSON files go through one encoder (``write_json``: numpy scalars and
  arrays as numbers, NaN and infinities as null, anything else as text).

- **One run at a time.** ``run_lock(out, what)`` holds an exclusive ``flock`` on
  ``out/.lenscal.lock`` for the run's life and writes who holds it there; a second run into
  the same directory is refused at once (LenscalError, so exit 2) naming the holder, instead
  of racing it. The kernel drops the lock when the holder dies, even by kill -9, so a stale
  lock never blocks a resume. ``--restart`` clears the directory but keeps the lock file:
  removing a held lock file would let a second run lock a fresh one beside it.
- **Parts verified, not trusted.** ``Parts.commit`` writes a part atomically, then its commit
  record ``parts/_index/part-NNNNN.json`` (row count, SHA-256 and size of the file, and the run it belongs
  to). A part is reused only when its record names this run and the file still has that hash
  and the expected rows; a truncated, rewritten, corrupted or foreign part (or one without a
  record: killed between the two writes) is scored again, never merged. One record per part
  (not one index file) because several workers of a run commit parts concurrently, possibly
  on a shared file system where appends are not atomic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lenscal.errors import LenscalError
from lenscal.fsutil import atomic_path, atomic_write_text, sha256_file

if TYPE_CHECKING:  # pandas only where parts are read and written: the torch-free scorer
    import pandas as pd  # imports this module (through the bundle seal's hash) without it

log = logging.getLogger("lenscal.workspace")

LOCK_NAME = ".lenscal.lock"
PARTS = "parts"


class RunLockedError(LenscalError):
    """Another run holds the results directory."""


def canonical_json(value: object) -> str:
    """``value`` as sorted-key JSON (anything JSON lacks as its str): the one text of a
    definition, plan, config or identity, which its hash is taken of."""
    return json.dumps(value, sort_keys=True, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_sha256(value: object) -> str:
    """The one hash of a definition, plan, config or identity: it decides whether two runs
    are the same run (results directories, parts, training checkpoints, the registry)."""
    return sha256_text(canonical_json(value))


def jsonable(value: object) -> object:
    """``value`` as plain JSON: numpy scalars and arrays as numbers and lists, NaN and
    infinities as null (JSON has neither), anything else as its text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def dump_json(value: object, indent: int | None = 1) -> str:
    """``value`` as the text of a results file (one encoder for every run's JSON)."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], value: object) -> None:
    """``value`` into ``path`` atomically (a reader sees the old file or the new one)."""
    atomic_write_text(Path(path), dump_json(value))


def slug(text: str, fallback: str = "run") -> str:
    """``text`` as a results-directory description: lowercase letters and digits joined by
    '_'."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or fallback


def run_name(run_id: str, description: str, date: dt.date | None = None) -> str:
    """``<RunID>_<YYYYMMDD>_<description>``, the team's name for a run and its results."""
    return f"{run_id}_{(date or dt.date.today()):%Y%m%d}_{slug(description)}"


def find_run_directory(
    root: str | os.PathLike[str],
    run_id: str,
    description: str,
    same_run: Callable[[Path], bool] | None = None,
) -> Path:
    """``<root>/<run_name>``; the newest existing directory of this run ID and description
    that ``same_run`` recognises is reused (a rerun resumes it); another run's directory of
    today's name gets a ``_2``, ``_3``... suffix instead of being mixed with."""
    root = Path(root)
    if root.is_dir() and same_run is not None:
        for candidate in sorted(root.glob(f"{run_id}_*_{slug(description)}"), reverse=True):
            if candidate.is_dir() and same_run(candidate):
                return candidate
    name = run_name(run_id, description)
    path, n = root / name, 2
    while path.exists() and not (same_run and same_run(path)):
        path, n = root / f"{name}_{n}", n + 1
    return path


def recorded_hash(path: Path, key: str = "definition_sha256") -> str | None:
    """The definition hash a run's JSON file records (None: no file, or unreadable)."""
    try:
        value = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def claim(
    out: Path,
    record: str,
    digest: str,
    *,
    what: str = "run",
    error: type[Exception] = LenscalError,
    identity: dict[str, object] | None = None,
) -> None:
    """``out`` for the run of definition hash ``digest``: free, or holding that run (its
    ``record`` file says so). Another run's directory is ``error``, never resumed into;
    with ``identity`` (what ``digest`` hashes) the message names the keys that differ."""
    path = Path(out) / record
    if not path.exists():
        return
    previous = recorded_hash(path)
    if previous == digest:
        return
    differing = ""
    if identity is not None:
        try:
            theirs = json.loads(path.read_text())
        except (OSError, ValueError):
            theirs = {}
        mine = json.loads(canonical_json(identity))
        changed = sorted(k for k in mine if not isinstance(theirs, dict) or theirs.get(k) != mine[k])
        if previous is None and not changed:
            return  # written before records carried their hash: the same run by its fields
        differing = f" (other {', '.join(changed)})" if changed else ""
    raise error(
        f"{out}: holds a {what} of another definition{differing} ({str(previous)[:12]}, this one "
        f"{digest[:12]}); choose another --out, or --restart to discard it"
    )


def results_directory(out: str | os.PathLike[str]) -> Path:
    """``out`` as a results directory, created if missing; one line (not a traceback) when it
    names a file or cannot be created."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise LenscalError(f"--out {path}: is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # a parent is a file
        raise LenscalError(f"--out {path}: a parent is not a directory") from exc
    except OSError as exc:
        raise LenscalError(f"--out {path}: cannot create it ({exc.strerror})") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise LenscalError(f"--out {path}: not writable")
    return path


def check_out(out: str | os.PathLike[str]) -> Path:
    """What ``results_directory`` would refuse, without creating anything (``--dry-run``)."""
    path = Path(out)
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if existing is None:  # pragma: no cover - "/" exists
        return path
    if existing == path and not path.is_dir():
        raise LenscalError(f"--out {path}: is a file, not a directory")
    if existing != path and not existing.is_dir():
        raise LenscalError(f"--out {path}: a parent is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LenscalError(f"--out {path}: {existing} is not writable")
    return path


def _holder() -> dict[str, object]:
    command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:4]))
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def describe_holder(text: str) -> str:
    try:
        h = json.loads(text)
        return f"pid {h['pid']} on {h['host']} ({h['command']}, since {h['since']})"
    except (ValueError, KeyError, TypeError):
        return "another lenscal run"  # it has the lock but has not written its name yet


#: Locks this process holds (resolved directory -> depth): a flow that holds its run's
#: directory calls the library runner, which locks it again, in the same process.
_held: dict[Path, int] = {}
_held_guard = threading.Lock()


@contextlib.contextmanager
def run_lock(out: str | os.PathLike[str], what: str = "run") -> Iterator[Path]:
    """Hold ``out`` for one run (see the module docstring); yields the directory. Reentrant
    within a process."""
    directory = results_directory(out)
    key = directory.resolve()
    with _held_guard:
        nested = key in _held
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield directory
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    with _locked(directory, what):
        with _held_guard:
            _held[key] = 1
        try:
            yield directory
        finally:
            with _held_guard:
                del _held[key]


@contextlib.contextmanager
def _locked(directory: Path, what: str) -> Iterator[None]:
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = describe_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise LenscalError(f"--out {directory}: cannot lock it ({exc.strerror})") from exc
        raise RunLockedError(
            f"--out {directory}: another {what} is writing there: {holder}; wait for it to finish "
            "or choose another --out"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({**_holder(), "what": what}) + "\n").encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def clear_directory(out: str | os.PathLike[str]) -> None:
    """Remove everything in ``out`` but its lock file (``--restart``)."""
    directory = Path(out)
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def is_bookkeeping(path: Path) -> bool:
    """Files of a results directory that are not results (the registry does not hash them)."""
    return path.name == LOCK_NAME


@dataclass(frozen=True)
class Parts:
    """The committed parts of one run (``run``: its definition hash) in ``directory/parts``."""

    directory: Path
    run: str

    @property
    def root(self) -> Path:
        return Path(self.directory) / PARTS

    def path(self, k: int) -> Path:
        return self.root / f"part-{k:05d}.parquet"

    def record_path(self, k: int) -> Path:
        # Under "_index": Parquet readers of the parts directory (pd.read_parquet(parts/))
        # skip names starting with "_", so the records never look like a part.
        return self.root / "_index" / f"part-{k:05d}.json"

    def commit(self, k: int, frame: pd.DataFrame) -> None:
        """Write part ``k`` and then its commit record; a reader trusts neither alone."""
        path = self.path(k)
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        record = {
            "part": k,
            "rows": len(frame),
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
            "run": self.run,
        }
        atomic_write_text(self.record_path(k), json.dumps(record) + "\n")

    def problem(self, k: int, rows: int | None = None) -> str | None:
        """Why part ``k`` cannot be reused (None: it is committed and intact). ``rows``: the
        row count the plan expects, when it knows."""
        path, record_path = self.path(k), self.record_path(k)
        if not path.is_file():
            return "missing" if not record_path.is_file() else "its file is missing"
        try:
            record = json.loads(record_path.read_text())
            want_rows, want_bytes, want_sha = int(record["rows"]), int(record["bytes"]), record["sha256"]
            owner = record["run"]
        except FileNotFoundError:
            return "no commit record (interrupted before it was committed, or not this run's)"
        except (ValueError, KeyError, TypeError):
            return "its commit record is unreadable"
        if owner != self.run:
            return "it belongs to another run"
        if rows is not None and want_rows != rows:
            return f"it holds {want_rows} rows, the plan {rows}"
        size = path.stat().st_size
        if size != want_bytes:
            return f"its file has {size} bytes, {want_bytes} were committed (truncated or rewritten)"
        if sha256_file(path) != want_sha:
            return "its content changed since it was committed (corrupted or rewritten)"
        return None

    def pending(self, ks: Iterable[int], rows: dict[int, int] | None = None) -> list[int]:
        """The parts of ``ks`` to (re)compute; a damaged one is named in the log once."""
        todo = []
        for k in ks:
            reason = self.problem(k, None if rows is None else rows.get(k))
            if reason is None:
                continue
            if reason != "missing":
                log.warning("%s: %s; computing it again", self.path(k), reason)
            todo.append(k)
        return todo

    def read(self, k: int, rows: int | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """Part ``k``, checked first: results never rest on an unverified part."""
        import pandas as pd

        reason = self.problem(k, rows)
        if reason is not None:
            raise LenscalError(f"{self.path(k)}: {reason}; run again to recompute it")
        return pd.read_parquet(self.path(k), columns=columns)
