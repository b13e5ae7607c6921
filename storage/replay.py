"""Replay and canary sets: bounded, per-label, seeded draws of learned samples.

Replay is mixed into an update against forgetting; the canary set judges whether a candidate
forgot. Both draw an equal share per label (a per-label reservoir), so a label with few
samples is not drowned by a large one, and both are reproducible for a given seed. A regress
model's labels are its targets (each number its own "label"), so there both come from one
reservoir over every learned sample instead.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tailord.storage.models import Sample, SampleState


class SampleRow(NamedTuple):
    """What an update needs of a sample; plain rows load several times faster than ORM objects."""

    id: int
    sha256: str
    label: str
    payload: bytes


_COLUMNS = (Sample.id, Sample.sha256, Sample.label, Sample.payload)


def queued_rows(session: Session, up_to_id: int) -> list[SampleRow]:
    """The queued samples with ids up to ``up_to_id``, oldest first."""
    rows = session.execute(
        select(*_COLUMNS)
        .where(Sample.state == SampleState.QUEUED, Sample.id <= up_to_id)
        .order_by(Sample.id)
    )
    return [SampleRow(*row) for row in rows]


def learned_ids_by_label(session: Session) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {}
    rows = session.execute(
        select(Sample.label, Sample.id)
        .where(Sample.state == SampleState.LEARNED)
        .order_by(Sample.id)
    )
    for label, sample_id in rows:
        ids.setdefault(label, []).append(sample_id)
    return ids


def per_label_draw(
    by_label: dict[str, list[int]], limit: int, seed: int, exclude: Collection[int] = ()
) -> list[int]:
    """Up to ``limit`` ids in all, split evenly over labels (leftovers go to larger labels)."""
    if limit <= 0:
        return []
    rng = random.Random(seed)
    pools = {label: [i for i in ids if i not in exclude] for label, ids in sorted(by_label.items())}
    pools = {label: ids for label, ids in pools.items() if ids}
    chosen: list[int] = []
    remaining = limit
    # Fill the smallest labels first so their unused share passes to the others.
    order = sorted(pools, key=lambda label: (len(pools[label]), label))
    for position, label in enumerate(order):
        share = remaining // (len(order) - position)
        pick = min(share, len(pools[label]))
        chosen.extend(rng.sample(pools[label], pick))
        remaining -= pick
    return sorted(chosen)


def load(session: Session, ids: list[int]) -> list[SampleRow]:
    out: list[SampleRow] = []
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(*_COLUMNS).where(Sample.id.in_(ids[start : start + 500])).order_by(Sample.id)
        )
        out.extend(SampleRow(*row) for row in rows)
    return out


def reservoir(session: Session, limit: int, seed: int, exclude: Collection[int] = ()) -> list[int]:
    """Up to ``limit`` learned ids, each equally likely (Vitter's algorithm R, seeded).

    The ids stream past; only ``limit`` of them are held, however many are learned.
    """
    if limit <= 0:
        return []
    rng = random.Random(seed)
    chosen: list[int] = []
    seen = 0
    ids = session.scalars(
        select(Sample.id).where(Sample.state == SampleState.LEARNED).order_by(Sample.id)
    )
    for sample_id in ids:
        if sample_id in exclude:
            continue
        seen += 1
        if len(chosen) < limit:
            chosen.append(sample_id)
        elif (j := rng.randrange(seen)) < limit:
            chosen[j] = sample_id
    return sorted(chosen)


def replay_and_canary(
    session: Session, replay: int, canary: int, seed: int, *, per_label: bool = True
) -> tuple[list[SampleRow], list[SampleRow]]:
    """A replay set and a disjoint canary set of learned samples, each per-label balanced
    (or, with ``per_label`` False, each a uniform draw from one reservoir).

    The canary set is drawn first and never replayed, so it judges forgetting fairly; it
    takes at most a fifth of the learned samples, so replay keeps most of them.
    """
    if not per_label:
        total = session.scalar(
            select(func.count()).select_from(Sample).where(Sample.state == SampleState.LEARNED)
        )
        canary_ids = reservoir(session, min(canary, (total or 0) // 5), seed + 1)
        replay_ids = reservoir(session, replay, seed, exclude=set(canary_ids))
        return load(session, replay_ids), load(session, canary_ids)
    by_label = learned_ids_by_label(session)
    total = sum(len(ids) for ids in by_label.values())
    canary_ids = per_label_draw(by_label, min(canary, total // 5), seed + 1)
    replay_ids = per_label_draw(by_label, replay, seed, exclude=set(canary_ids))
    return load(session, replay_ids), load(session, canary_ids)
