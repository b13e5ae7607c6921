"""Replay and canary sets: bounded, per-label, seeded draws of learned samples.

Replay is mixed into an update against forgetting; the canary set judges whether a candidate
forgot. Both draw an equal share per label (a per-label reservoir), so a label with few
samples is not drowned by a large one, and both are reproducible for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from tailord.storage.models import Sample, SampleState


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


def load(session: Session, ids: list[int]) -> list[Sample]:
    out: list[Sample] = []
    for start in range(0, len(ids), 500):
        out.extend(
            session.scalars(
                select(Sample).where(Sample.id.in_(ids[start : start + 500])).order_by(Sample.id)
            )
        )
    return out


def replay_and_canary(
    session: Session, replay: int, canary: int, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """A replay set and a disjoint canary set of learned samples, each per-label balanced.

    The canary set is drawn first and never replayed, so it judges forgetting fairly; it
    takes at most a fifth of the learned samples, so replay keeps most of them.
    """
    by_label = learned_ids_by_label(session)
    total = sum(len(ids) for ids in by_label.values())
    canary_ids = per_label_draw(by_label, min(canary, total // 5), seed + 1)
    replay_ids = per_label_draw(by_label, replay, seed, exclude=set(canary_ids))
    return load(session, replay_ids), load(session, canary_ids)
