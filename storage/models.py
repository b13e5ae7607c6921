"""Typed SQLAlchemy 2 models: samples, rejections, versions, updates.

The database is the source of truth for what has been acknowledged and learned; the version
folders on disk hold the weights, and a version row is committed only after its folder is
published (see ``versions.py``).
"""

from __future__ import annotations

import enum
import time

from sqlalchemy import JSON, Enum, ForeignKey, Index, LargeBinary, MetaData, String, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tailord.storage.states import SampleState, UpdateState

__all__ = [
    "Base",
    "Embedding",
    "Rejection",
    "Sample",
    "SampleState",
    "Tombstone",
    "Update",
    "UpdateEvent",
    "UpdateState",
    "Version",
    "VersionEvent",
]

# Explicit constraint names keep future migrations deterministic across SQLite rebuilds.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _values(enum_type: type[enum.StrEnum]) -> list[str]:
    # Store the lower-case values, not the member names: the file is read by people too.
    return [member.value for member in enum_type]


def now() -> float:
    """Times are Unix seconds (UTC): SQLite has no time zone type, and numbers compare cheaply."""
    return time.time()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Sample(Base):
    """One labelled example, identified by the sha256 of its stored payload."""

    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(4096))
    size: Mapped[int]
    state: Mapped[SampleState] = mapped_column(
        Enum(SampleState, native_enum=False, length=20, values_callable=_values),
        default=SampleState.QUEUED,
    )
    learned_in: Mapped[int | None] = mapped_column(ForeignKey("versions.number"))
    created_at: Mapped[float] = mapped_column(default=now)
    # The same content dropped again under another label: the last label wins, and the one
    # it replaced is kept beside the time it changed.
    previous_label: Mapped[str | None] = mapped_column(String(200))
    relabeled_at: Mapped[float | None]

    __table_args__ = (Index("ix_samples_state_id", "state", "id"),)


class Rejection(Base):
    """An inbox file (or some lines of a .jsonl) that could not become a sample.

    ``moved`` is false when the file could not be moved to ``INBOX/.rejected/`` (a read-only
    inbox): the ingestor then skips that same path, size and mtime instead of retrying it.
    """

    __tablename__ = "rejections"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(4096))
    size: Mapped[int]
    mtime_ns: Mapped[int]
    reason: Mapped[str] = mapped_column(String(4096))
    moved: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[float] = mapped_column(default=now)

    __table_args__ = (Index("ix_rejections_source", "source"),)


class Version(Base):
    """A promoted, immutable model version; its files live in ``versions/<number>/``."""

    __tablename__ = "versions"

    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    parent: Mapped[int | None]
    created_at: Mapped[float] = mapped_column(default=now)
    sample_count: Mapped[int] = mapped_column(default=0)
    manifest: Mapped[dict[str, object]] = mapped_column(JSON)
    pinned: Mapped[bool] = mapped_column(default=False)  # kept whatever [versions] keep says
    removed_at: Mapped[float | None]  # folder deleted (the row stays: samples refer to it)


class Update(Base):
    """One background run that learns the queued samples and may yield a new version."""

    __tablename__ = "updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[UpdateState] = mapped_column(
        Enum(UpdateState, native_enum=False, length=20, values_callable=_values),
        default=UpdateState.RUNNING,
    )
    reason: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[float] = mapped_column(default=now)
    finished_at: Mapped[float | None]
    base_version: Mapped[int]
    version: Mapped[int | None]
    sample_count: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(String(4096))
    metrics: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    gate: Mapped[dict[str, object] | None] = mapped_column(JSON)  # decision and its figures
    # The parameters it runs with (``[update]`` and k, a request's own over the config's);
    # NULL in rows written before they were stored.
    params: Mapped[dict[str, object] | None] = mapped_column(JSON)
    # Retrains the head from version 0 on every learned sample plus the queue. A server
    # default, so that a database made before the column gets it added (db.py).
    from_base: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Added later (storage/db.py adds them to an older file): the highest queued sample id
    # it read, and the expired update it resumed (same samples, from its checkpoint).
    up_to_id: Mapped[int | None]
    resumed_from: Mapped[int | None]  # an update id (no foreign key: ADD COLUMN keeps it plain)
    # A request asked with ?defer=true: it waits for the policy's conditions, also after a
    # restart, until a plain request joins it.
    deferred: Mapped[bool] = mapped_column(default=False, server_default=false())


class UpdateEvent(Base):
    """A progress event of an update (began, epoch ends, thinned mini-batch ends)."""

    __tablename__ = "update_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    update_id: Mapped[int] = mapped_column(ForeignKey("updates.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    epoch: Mapped[int]
    batch: Mapped[int]
    loss: Mapped[float | None]
    accuracy: Mapped[float | None]
    samples_per_second: Mapped[float | None]
    time: Mapped[float] = mapped_column(default=now)


class Embedding(Base):
    """A frozen backbone's features for one sample: float32 little-endian bytes."""

    __tablename__ = "embeddings"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    backbone: Mapped[str] = mapped_column(String(300), primary_key=True)  # backbone identity
    dim: Mapped[int]
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(default=now)


class Tombstone(Base):
    """The sha256 of a forgotten sample: the same content dropped again is not learned again
    (a trigger, made in db.py, skips its insert) unless it is dropped as ``NAME.relearn.EXT``
    (docs/inbox.md). Only the hash is kept: nothing of the content."""

    __tablename__ = "tombstones"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    forgotten_at: Mapped[float] = mapped_column(default=now)


class VersionEvent(Base):
    """The history of ``current`` and of the version folders: publish, rollback, fallback,
    pin, unpin, import, removal. Rows are only ever added."""

    __tablename__ = "version_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[float] = mapped_column(default=now)
    kind: Mapped[str] = mapped_column(String(20))
    version: Mapped[int]
    previous: Mapped[int | None]  # what was current before, for flips
    detail: Mapped[str | None] = mapped_column(String(4096))
