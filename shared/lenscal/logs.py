"""Logging set-up for commands and services. Library modules only create loggers
(``lenscal.<module>``); what is shown is decided here, once per process: warnings by
default, INFO with ``--verbose``, one JSON object per line for services."""

from __future__ import annotations

import json
import logging
import sys

#: Chatty third-party loggers held at WARNING unless --verbose (alembic's migration lines).
QUIET = ("alembic", "alembic.runtime.migration", "prefect", "httpx", "urllib3")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (structured logs for collectors), tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class StderrHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a record is emitted, not the one there
    was at set-up: a test runner or an in-process CLI runner swaps stderr and closes its
    copy afterwards, and a handler holding that copy would fail on every later record."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure_logging(*, verbose: bool = False, json_lines: bool = False, level: int | None = None) -> None:
    """Route log records to stderr: WARNING and up by default, INFO (and third-party
    chatter) with ``verbose``; ``json_lines`` for services."""
    handler = StderrHandler()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    )
    chosen = level if level is not None else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=chosen, handlers=[handler], force=True)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
