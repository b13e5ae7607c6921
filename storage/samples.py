"""Samples: adding them durably, reading the queue and replay, marking them learned."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from tailord.storage.models import Sample, SampleState


@dataclass(frozen=True)
class NewSample:
    """A decoded, validated sample, ready to be committed."""

    sha256: str
    label: str
    kind: str
    payload: bytes
    source: str
    size: int


def add_samples(session: Session, samples: Sequence[NewSample]) -> int:
    """Insert ``samples`` in one statement; returns how many were new (duplicates are skipped)."""
    if not samples:
        return 0
    before = session.scalar(select(func.count()).select_from(Sample)) or 0
    stmt = insert(Sample).on_conflict_do_nothing(index_elements=[Sample.sha256])
    session.execute(
        stmt,
        [
            {
                "sha256": s.sha256,
                "label": s.label,
                "kind": s.kind,
                "payload": s.payload,
                "source": s.source,
                "size": s.size,
                "state": SampleState.QUEUED,
            }
            for s in samples
        ],
    )
    after = session.scalar(select(func.count()).select_from(Sample)) or 0
    return after - before


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


def mark_learned(session: Session, ids: Iterable[int], version: int) -> None:
    id_list = list(ids)
    # Chunked: SQLite caps the number of bound parameters in one statement.
    for start in range(0, len(id_list), 500):
        session.execute(
            update(Sample)
            .where(Sample.id.in_(id_list[start : start + 500]))
            .values(state=SampleState.LEARNED, learned_in=version)
        )


def mark_learned_by_sha(session: Session, digests: Iterable[str], version: int) -> int:
    """Mark samples learned by content hash (used when reconciling a published version)."""
    digest_list = list(digests)
    changed = 0
    for start in range(0, len(digest_list), 500):
        result = session.execute(
            update(Sample)
            .where(Sample.sha256.in_(digest_list[start : start + 500]))
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


def vector_dim(session: Session) -> int | None:
    """The size of stored vectors (float32), if any sample is stored yet."""
    size = session.scalar(
        select(func.length(Sample.payload)).where(Sample.kind == "vector").limit(1)
    )
    return None if size is None else int(size) // 4


def list_samples(
    session: Session,
    *,
    state: str | None = None,
    label: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """A page of samples (no payloads) as plain dicts, by ascending id; page on with
    ``after_id`` = the last id of the previous page."""
    stmt = select(
        Sample.id,
        Sample.sha256,
        Sample.label,
        Sample.kind,
        Sample.state,
        Sample.size,
        Sample.source,
        Sample.created_at,
        Sample.learned_in,
    ).order_by(Sample.id)
    if state is not None:
        stmt = stmt.where(Sample.state == SampleState(state))
    if label is not None:
        stmt = stmt.where(Sample.label == label)
    if after_id is not None:
        stmt = stmt.where(Sample.id > after_id)
    rows = session.execute(stmt.limit(limit)).mappings()
    return [{**row, "state": str(row["state"])} for row in rows]
