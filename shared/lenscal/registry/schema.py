"""SQLAlchemy 2 tables of the registry. Any change here needs an alembic migration in
``migrations/versions`` (a test compares the two)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class RecordRow(Base):
    """One run or definition: a training generation, diagnostic, evaluation, injection model."""

    __tablename__ = "records"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    # Status the record had when it was invalidated ("Complete (INVALIDATED)" in markdown).
    status_before_invalidation: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")  # the key finding
    run_date: Mapped[dt.date | None] = mapped_column(Date)
    results_path: Mapped[str | None] = mapped_column(Text)
    config_json: Mapped[str | None] = mapped_column(Text)
    config_sha256: Mapped[str | None] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    superseded_by: Mapped[str | None] = mapped_column(String(128))
    invalidated_reason: Mapped[str | None] = mapped_column(Text)
    invalidated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Markdown placement and the team's extra columns (LR, Epochs, Scripts, ...), as JSON.
    section: Mapped[str | None] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    extra_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    parents: Mapped[list[ParentRow]] = relationship(
        foreign_keys="ParentRow.child_id", cascade="all, delete-orphan", lazy="selectin"
    )
    metrics: Mapped[list[MetricRow]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    artifacts: Mapped[list[ArtifactRow]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class ParentRow(Base):
    """Lineage: ``child`` was made from ``parent`` in ``role`` (checkpoint, injection_model, grid,
    init_from, ...)."""

    __tablename__ = "parents"
    __table_args__ = (UniqueConstraint("child_id", "parent_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    child_id: Mapped[str] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)
    role: Mapped[str] = mapped_column(String(32))


class MetricRow(Base):
    """A metric: a number read from a results file, or text imported from a hand-kept table."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("record_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float)
    text: Mapped[str | None] = mapped_column(Text)
    # Where the number came from: a results file path, "cli", or "imported:<markdown file>".
    source: Mapped[str] = mapped_column(Text, default="")
    source_sha256: Mapped[str | None] = mapped_column(String(64))


class ArtifactRow(Base):
    """A file a record produced or used, with the SHA-256 it had when recorded."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("record_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(32), default="output")


class AliasRow(Base):
    """A moving name (``current-best``) for a record."""

    __tablename__ = "aliases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class DocumentRow(Base):
    """Free text of the rendered markdown that is not a run: preamble, shared resources, naming."""

    __tablename__ = "documents"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    text: Mapped[str] = mapped_column(Text, default="")
