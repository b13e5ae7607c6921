"""Requeueing samples: by ids (past SQLite's parameter cap), label and state, counted once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from tailord.storage.db import open_database
from tailord.storage.models import Sample, SampleState
from tailord.storage.requeue import rejected_among, requeue
from tailord.storage.samples import NewSample, add_samples, counts


def test_requeue_matches_every_filter_given(tmp_path: Path) -> None:
    db = open_database(tmp_path / "tailord.db")
    try:
        with db.write() as session:
            add_samples(
                session,
                [
                    NewSample(f"{i:064x}", "ab"[i % 2], "vector", b"\0\0\0\0", f"{i}.npy", 4)
                    for i in range(1200)
                ],
            )
            session.execute(
                update(Sample).where(Sample.id <= 1000).values(state=SampleState.REJECTED)
            )
            session.execute(
                update(Sample).where(Sample.id > 1100).values(state=SampleState.LEARNED)
            )
        with db.write() as session:
            by_label = requeue(session, label="a", state=SampleState.REJECTED)
        assert (by_label.requeued, by_label.already_queued) == (500, 0)
        with db.write() as session:
            by_ids = requeue(session, ids=list(range(1, 1201)))  # three chunks of ids
        assert (by_ids.requeued, by_ids.already_queued) == (600, 600)
        with db.read() as session:
            assert counts(session) == {"queued": {"a": 600, "b": 600}}
            assert rejected_among(session, [f"{i:064x}" for i in range(5)]) == {}
            assert session.query(Sample).filter(Sample.learned_in.is_not(None)).count() == 0
    finally:
        db.close()
