"""The registry database: where it is, how it is opened, how its schema is kept current.

Default: a SQLite file (WAL) at ``$LENSCAL_HOME/registry.sqlite``; team mode:
``LENSCAL_REGISTRY_URL=postgresql://host/db``. The schema is brought to the newest alembic
revision on open, under a lock, so several processes opening a fresh database at once are
safe. SQLite writes use ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy
timeout instead of failing mid-transaction.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from lenscal.home import lenscal_home

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x1E45CA1  # any constant shared by every lenscal process


def default_url() -> str:
    url = os.environ.get("LENSCAL_REGISTRY_URL")
    return url or f"sqlite:///{lenscal_home() / 'registry.sqlite'}"


def _with_driver(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3 unless a driver is named
    return url


def make_engine(url: str) -> Engine:
    url = _with_driver(url)
    if not url.startswith("sqlite"):
        server = create_engine(url, pool_pre_ping=True)  # a restarted server's dead connections
        _reconnect_patiently(server)
        return server
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///") :]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 120})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by pysqlite
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=120000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


#: Seconds a new connection keeps trying while the database server is down (a restart).
RECONNECT_S = 90.0


def _reconnect_patiently(engine: Engine) -> None:
    """New connections retry for RECONNECT_S while the server refuses them, so a run that
    touches the registry while the database restarts waits for it instead of failing."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        deadline = time.monotonic() + RECONNECT_S
        delay = 0.5
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                if not _restarting(exc) or time.monotonic() > deadline:
                    raise  # a wrong host, database or password fails at once
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _restarting(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(
        sign in text
        for sign in (
            "connection refused",
            "the database system is starting up",
            "the database system is shutting down",
            "the database system is in recovery mode",
            "terminating connection due to administrator command",
            "server closed the connection unexpectedly",
        )
    )


def make_read_only_engine(url: str) -> Engine:
    """An engine that cannot write (the UI's): SQLite opened ``mode=ro`` (or, where even the
    WAL's shared-memory file cannot be made, e.g. a read-only volume, as an immutable
    snapshot), PostgreSQL sessions with ``default_transaction_read_only``."""
    url = _with_driver(url)
    if not url.startswith("sqlite"):
        server = create_engine(
            url, pool_pre_ping=True, connect_args={"options": "-c default_transaction_read_only=on"}
        )
        _reconnect_patiently(server)
        return server
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        raise ValueError(f"{url}: a read-only registry needs a database file")
    path = Path(url[len("sqlite:///") :]).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no registry database at {path}")
    import sqlite3

    def connect() -> Any:
        # Each connection is new (NullPool), so every request reads the file as it is now;
        # ``immutable`` only when plain read-only fails (a WAL database on read-only media
        # with no writer: its log is then empty, so the file alone is current).
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            connection = sqlite3.connect(
                f"file:{path}?{flags}", uri=True, timeout=120, check_same_thread=False
            )
            try:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return connection
            except sqlite3.OperationalError:
                connection.close()
        raise sqlite3.OperationalError(f"cannot open {path} read-only")

    return create_engine("sqlite://", creator=connect, poolclass=NullPool)


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest alembic revision (checked, never changed)."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision (never drops records)."""
    import logging

    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)  # no migration chatter in CLI output
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
