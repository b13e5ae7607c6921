"""Samples: adding them durably, reading the queue and replay, marking them learned."""

from __future__ import annotations

import functools
import random
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import NamedTuple

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from tailord.storage.models import Rejection, Sample, SampleState


class NewSample(NamedTuple):
    """A decoded, validated sample, ready to be committed (a tuple: made by the thousand)."""

    sha256: str
    label: str
    kind: str
    payload: bytes
    source: str
    size: int


@dataclass
class Added:
    """What one :func:`add_samples` call did."""

    added: int = 0  # new samples
    duplicates: int = 0  # content already stored under the same label
    relabeled: int = 0  # content already stored under another label, now queued again
    forgotten: int = 0  # content forgotten before (a tombstone): skipped, not learned again


@dataclass(frozen=True)
class NewRejection:
    source: str
    size: int
    mtime_ns: int
    reason: str
    moved: bool


_INSERT = (
    "INSERT INTO samples (sha256, label, kind, payload, source, size, state, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?) ON CONFLICT (sha256) DO NOTHING"
)
# Many rows a statement, the time bound once as ?1 (written first, so the plain ? that
# follow are numbered from 2 on, in the order of NewSample's fields).
_INSERT_ROW = "(?1, ?, ?, ?, ?, ?, ?, 'queued')"
_INSERT_MANY = (
    "INSERT INTO samples (created_at, sha256, label, kind, payload, source, size, state)"
    " VALUES {rows} ON CONFLICT (sha256) DO NOTHING"
)
_ROWS_PER_INSERT = 1000  # one statement's rows (6001 parameters); fewer where SQLite caps lower
_RELABEL = (
    "UPDATE samples SET previous_label = label, label = ?, relabeled_at = ?,"
    " state = 'queued', learned_in = NULL WHERE sha256 = ?"
)
_CHUNK = 500  # SQLite caps the bound parameters of one statement


def add_samples(
    session: Session, samples: Sequence[NewSample], *, at: float | None = None
) -> Added:
    """Store ``samples`` in the session's transaction, deduplicated by sha256.

    The same content again under the same label is a duplicate; under another label it is a
    relabel: the label changes, the old one and the time are kept, and the sample is queued
    again so the next update learns the new label. Within ``samples`` the last label wins
    (earlier copies count as duplicates).
    """
    result = Added()
    if not samples:
        return result
    when = time.time() if at is None else at
    latest: dict[str, NewSample] = {}
    for sample in samples:
        latest[sample.sha256] = sample
    result.duplicates = len(samples) - len(latest)
    # Raw DB-API executemany on the session's own connection (so inside its transaction):
    # building ORM objects or Core parameter sets costs more than SQLite's insert itself.
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        last_id = cursor.execute("SELECT coalesce(max(id), 0) FROM samples").fetchone()[0]
        result.added = _insert(cursor, list(latest.values()), when)
        if result.added < len(latest):
            # Some were already stored: only now is it worth looking up which, and how.
            before = result.duplicates
            relabels = _relabels(cursor, latest, last_id, result)
            if relabels:
                cursor.executemany(_RELABEL, [(label, when, sha) for sha, label in relabels])
            # Neither inserted nor found: the tombstone trigger (db.py) skipped them.
            found = result.duplicates - before + result.relabeled
            result.forgotten = len(latest) - result.added - found
    finally:
        cursor.close()
    return result


def _insert(cursor: sqlite3.Cursor, rows: list[NewSample], when: float) -> int:
    """Insert ``rows`` (those already stored are skipped); returns how many were new.

    Full groups of rows go in as one multi-row statement, which SQLite runs in a single step
    with the GIL released. ``executemany`` takes the GIL back after every row, and while the
    ingest thread decodes the next lines (holding the GIL) each of those takes up to the
    interpreter's switch interval: the commit and the decoding then ran one after the other
    instead of side by side. What is left over (under a group) goes through
    ``executemany``, so only two statements are ever prepared.
    """
    limit = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per = min(_ROWS_PER_INSERT, (limit - 1) // len(NewSample._fields))
    added = 0
    full = len(rows) - len(rows) % per if per > 0 else 0
    if full:
        statement = _many_rows_statement(per)
        for start in range(0, full, per):
            cursor.execute(statement, [when, *chain.from_iterable(rows[start : start + per])])
            added += cursor.rowcount
    if full < len(rows):
        cursor.executemany(_INSERT, [(*row, when) for row in rows[full:]])
        added += cursor.rowcount
    return added


@functools.cache
def _many_rows_statement(rows: int) -> str:
    return _INSERT_MANY.format(rows=", ".join([_INSERT_ROW] * rows))


def _relabels(
    cursor: sqlite3.Cursor, latest: dict[str, NewSample], last_id: int, result: Added
) -> list[tuple[str, str]]:
    digests = list(latest)
    relabels = []
    for start in range(0, len(digests), _CHUNK):
        chunk = digests[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = cursor.execute(
            f"SELECT sha256, label FROM samples WHERE id <= ? AND sha256 IN ({marks})",  # noqa: S608 (only placeholders)
            [last_id, *chunk],
        )
        for sha, label in rows.fetchall():
            if label == latest[sha].label:
                result.duplicates += 1
            else:
                relabels.append((sha, latest[sha].label))
                result.relabeled += 1
    return relabels


def add_rejections(session: Session, rejections: Iterable[NewRejection]) -> None:
    rows = [
        {
            "source": r.source,
            "size": r.size,
            "mtime_ns": r.mtime_ns,
            "reason": r.reason,
            "moved": r.moved,
        }
        for r in rejections
    ]
    if rows:
        session.execute(insert(Rejection), rows)


def unmoved_rejections(session: Session) -> set[tuple[str, int, int]]:
    """``(source, size, mtime_ns)`` of rejected files left in place (a read-only inbox)."""
    rows = session.execute(
        select(Rejection.source, Rejection.size, Rejection.mtime_ns).where(~Rejection.moved)
    )
    return {(source, size, mtime) for source, size, mtime in rows}


def rejection_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Rejection)) or 0


def queued_totals(session: Session) -> tuple[int, int]:
    """How many samples are queued, and their stored bytes (drives back-pressure)."""
    row = session.execute(
        select(func.count(), func.coalesce(func.sum(func.length(Sample.payload)), 0)).where(
            Sample.state == SampleState.QUEUED
        )
    ).one()
    return int(row[0]), int(row[1])


def list_samples(
    session: Session,
    *,
    state: str | None = None,
    label: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, object]]:
    """A page of samples, oldest first, as plain dicts (no payload): pass the last ``id`` as
    ``after_id`` for the next page."""
    stmt = select(
        Sample.id,
        Sample.sha256,
        Sample.label,
        Sample.kind,
        Sample.source,
        Sample.size,
        Sample.state,
        Sample.learned_in,
        Sample.created_at,
        Sample.previous_label,
        Sample.relabeled_at,
    ).order_by(Sample.id)
    if state is not None:
        stmt = stmt.where(Sample.state == SampleState(state))
    if label is not None:
        stmt = stmt.where(Sample.label == label)
    if after_id is not None:
        stmt = stmt.where(Sample.id > after_id)
    stmt = stmt.limit(max(0, min(limit, 10_000)))
    return [{**row._asdict(), "state": str(row.state)} for row in session.execute(stmt)]


def queued(session: Session, *, up_to_id: int | None = None) -> list[Sample]:
    """The queue, oldest first; ``up_to_id`` fixes the set an update started with."""
    stmt = select(Sample).where(Sample.state == SampleState.QUEUED).order_by(Sample.id)
    if up_to_id is not None:
        stmt = stmt.where(Sample.id <= up_to_id)
    return list(session.scalars(stmt))


def replay(session: Session, limit: int, *, seed: int) -> list[Sample]:
    """Up to ``limit`` learned samples, drawn uniformly with a fixed seed (reproducible)."""
    ids = list(
        session.scalars(
            select(Sample.id).where(Sample.state == SampleState.LEARNED).order_by(Sample.id)
        )
    )
    if len(ids) > limit:
        ids = sorted(random.Random(seed).sample(ids, limit))
    if not ids:
        return []
    return list(session.scalars(select(Sample).where(Sample.id.in_(ids)).order_by(Sample.id)))


def mark_learned(
    session: Session, ids: Iterable[int], version: int, *, read_at: float | None = None
) -> int:
    """Mark the samples ``ids`` learned by ``version``; returns how many were.

    ``read_at`` is when the update read them: one relabeled since then was learned under
    its old label, so it stays queued for the next update to learn the new one.
    """
    id_list = list(ids)
    changed = 0
    # Chunked: SQLite caps the number of bound parameters in one statement.
    for start in range(0, len(id_list), 500):
        statement = update(Sample).where(Sample.id.in_(id_list[start : start + 500]))
        if read_at is not None:
            statement = statement.where(
                or_(Sample.relabeled_at.is_(None), Sample.relabeled_at < read_at)
            )
        result = session.execute(statement.values(state=SampleState.LEARNED, learned_in=version))
        changed += result.rowcount  # type: ignore[attr-defined]
    return changed


def mark_learned_by_sha(session: Session, digests: Iterable[str], version: int) -> int:
    """Mark samples learned by content hash (used when reconciling a published version).

    One learned already keeps the version that first learned it: a version retrained from
    base lists every sample it relearned, and forget finds the versions holding a sample
    through the version that first learned it (daemon/updates/forget.py).
    """
    digest_list = list(digests)
    changed = 0
    for start in range(0, len(digest_list), 500):
        result = session.execute(
            update(Sample)
            .where(
                Sample.sha256.in_(digest_list[start : start + 500]),
                Sample.state != SampleState.LEARNED,
            )
            .values(state=SampleState.LEARNED, learned_in=version)
        )
        changed += result.rowcount  # type: ignore[attr-defined]
    return changed


def counts(session: Session) -> dict[str, dict[str, int]]:
    """Sample counts as ``{state: {label: n}}``."""
    out: dict[str, dict[str, int]] = {}
    rows = session.execute(
        select(Sample.state, Sample.label, func.count()).group_by(Sample.state, Sample.label)
    )
    for state, label, n in rows:
        out.setdefault(str(state), {})[label] = n
    return out


def last_queued_at(session: Session) -> float | None:
    """When the newest queued sample arrived (drives the quiet period)."""
    return session.scalar(
        select(func.max(Sample.created_at)).where(Sample.state == SampleState.QUEUED)
    )


def oldest_queued_at(session: Session) -> float | None:
    """When the oldest queued sample arrived (drives ``max_wait_seconds``)."""
    return session.scalar(
        select(func.min(Sample.created_at)).where(Sample.state == SampleState.QUEUED)
    )


def vector_dim(session: Session) -> int | None:
    """The size of stored vectors (float32), if any sample is stored yet."""
    size = session.scalar(
        select(func.length(Sample.payload)).where(Sample.kind == "vector").limit(1)
    )
    return None if size is None else int(size) // 4
