"""Forgetting samples in the database: their rows and cached embeddings deleted, a tombstone
(the sha256 only) kept, and the file compacted so that their bytes are gone from disk.

``PRAGMA secure_delete`` (set on every connection, db.py) zeroes deleted content in place;
``VACUUM`` then rebuilds the file without the free pages, and a ``TRUNCATE`` checkpoint
empties the write-ahead log, which held the pages as they were written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from tailord.storage.db import Database
from tailord.storage.errors import StorageError
from tailord.storage.models import Embedding, Sample, Tombstone

logger = logging.getLogger(__name__)

RELEARN_MARK = ".relearn."  # in a dropped file's name: learn it even if it was forgotten
_CHUNK = 500  # SQLite caps the bound parameters of one statement


class Doomed(NamedTuple):
    """A sample about to be forgotten: what the answer and the version check need."""

    id: int
    sha256: str
    learned_in: int | None  # the version that first learned it (kept when relabeled)


def find(
    session: Session, ids: Sequence[int], digests: Sequence[str], label: str | None
) -> list[Doomed]:
    """The samples with any of ``ids``, any of the ``digests`` or the ``label``."""
    found: dict[int, Doomed] = {}
    for start in range(0, max(len(ids), len(digests), 1), _CHUNK):
        conditions: list[ColumnElement[bool]] = []
        if ids[start : start + _CHUNK]:
            conditions.append(Sample.id.in_(ids[start : start + _CHUNK]))
        if digests[start : start + _CHUNK]:
            conditions.append(Sample.sha256.in_(digests[start : start + _CHUNK]))
        if label is not None and start == 0:
            conditions.append(Sample.label == label)
        if not conditions:
            continue
        rows = session.execute(
            select(Sample.id, Sample.sha256, Sample.learned_in).where(or_(*conditions))
        )
        for row in rows:
            found[row[0]] = Doomed(*row)
    return [found[i] for i in sorted(found)]


def erase(session: Session, doomed: Sequence[Doomed]) -> None:
    """Delete the samples and their cached embeddings; keep a tombstone for each."""
    now = time.time()
    for start in range(0, len(doomed), _CHUNK):
        chunk = doomed[start : start + _CHUNK]
        digests = [d.sha256 for d in chunk]
        session.execute(delete(Embedding).where(Embedding.sha256.in_(digests)))
        session.execute(delete(Sample).where(Sample.id.in_([d.id for d in chunk])))
        session.execute(
            insert(Tombstone)
            .values([{"sha256": sha, "forgotten_at": now} for sha in digests])
            .on_conflict_do_nothing()
        )


def release(session: Session, digests: Iterable[str]) -> None:
    """Drop the tombstones of ``digests``: that content may be learned again."""
    listed = list(digests)
    for start in range(0, len(listed), _CHUNK):
        session.execute(
            delete(Tombstone).where(Tombstone.sha256.in_(listed[start : start + _CHUNK]))
        )


def compact(db: Database, attempts: int = 50) -> None:
    """Rebuild the database file and empty its write-ahead log, so that deleted content is
    gone from disk. A reader holding an old snapshot keeps the log from being emptied: the
    checkpoint is tried again (readers here are short) and an error says so if it never is.
    """
    raw = db.engine.raw_connection()
    try:
        # Autocommit (db.py): VACUUM cannot run inside a transaction.
        cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.execute("VACUUM")
        for _ in range(attempts):
            busy, _frames, _done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                break
            time.sleep(0.05)
        else:
            raise StorageError(
                "the database's write-ahead log could not be emptied: a reader held it; "
                "forget again, or restart tailord (a clean stop empties it)"
            )
        cursor.close()
    finally:
        raw.close()
    logger.info("database compacted: deleted content is gone from %s", db.path)
