"""Samples put back in the queue on request (``POST /v1/samples/requeue``), and which of a
batch's samples the gate rejected (a file dropped again says so instead of "already known")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from tailord.storage.models import Sample, SampleState

_CHUNK = 500  # SQLite caps the bound parameters of one statement
T = TypeVar("T")


@dataclass(frozen=True)
class Requeued:
    requeued: int  # learned or rejected samples now queued again
    already_queued: int  # matched, but queued already


def requeue(
    session: Session,
    *,
    ids: Sequence[int] | None = None,
    label: str | None = None,
    state: SampleState | None = None,
) -> Requeued:
    """Queue again the samples matching every filter given, keeping their current label.

    A learned sample is learned again by the next update (``learned_in`` is cleared);
    a rejected one gets another chance at the gate.
    """
    if ids is None and label is None and state is None:
        raise ValueError("requeue needs ids, a label or a state")
    requeued = already = 0
    for chunk in [None] if ids is None else _chunks(ids):
        matching = _filters(chunk, label, state)
        already += (
            session.scalar(
                select(func.count())
                .select_from(Sample)
                .where(*matching, Sample.state == SampleState.QUEUED)
            )
            or 0
        )
        result = session.execute(
            update(Sample)
            .where(*matching, Sample.state != SampleState.QUEUED)
            .values(state=SampleState.QUEUED, learned_in=None)
        )
        requeued += result.rowcount  # type: ignore[attr-defined]
    return Requeued(requeued, already)


def rejected_among(session: Session, digests: Iterable[str]) -> dict[str, int]:
    """``{sha256: id}`` of the samples among ``digests`` that are rejected."""
    found: dict[str, int] = {}
    for chunk in _chunks(list(digests)):
        rows = session.execute(
            select(Sample.sha256, Sample.id).where(
                Sample.sha256.in_(chunk), Sample.state == SampleState.REJECTED
            )
        )
        found.update({sha: sample_id for sha, sample_id in rows})
    return found


def _filters(
    ids: Sequence[int] | None, label: str | None, state: SampleState | None
) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if ids is not None:
        filters.append(Sample.id.in_(ids))
    if label is not None:
        filters.append(Sample.label == label)
    if state is not None:
        filters.append(Sample.state == state)
    return filters


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[start : start + _CHUNK] for start in range(0, len(items), _CHUNK)]
