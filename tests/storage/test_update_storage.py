"""Replay/canary draws and the embedding cache, on a real SQLite file."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import update

from tailord.storage.db import open_database
from tailord.storage.embeddings import cached, store
from tailord.storage.models import Sample, SampleState, Update, UpdateState
from tailord.storage.replay import per_label_draw, queued_rows, replay_and_canary
from tailord.storage.samples import NewSample, add_samples


def test_per_label_draw_is_balanced_and_passes_unused_shares_on() -> None:
    by_label = {"big": list(range(100)), "small": [200, 201], "mid": list(range(300, 320))}
    drawn = per_label_draw(by_label, 30, seed=1)
    assert len(drawn) == 30
    assert {200, 201} <= set(drawn)  # the small label gives all it has
    assert sum(300 <= i < 320 for i in drawn) == 14  # (30 - 2) / 2
    assert per_label_draw(by_label, 30, seed=1) == drawn
    assert per_label_draw(by_label, 30, seed=2) != drawn
    assert not set(per_label_draw(by_label, 200, seed=1, exclude=set(drawn))) & set(drawn)


def test_replay_and_canary_are_disjoint_learned_samples(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.db")
    samples = [
        NewSample(hashlib.sha256(bytes([i])).hexdigest(), "ab"[i % 2], "vector", bytes(4), "", 4)
        for i in range(50)
    ]
    with db.write() as session:
        add_samples(session, samples)
        session.execute(update(Sample).where(Sample.id <= 40).values(state=SampleState.LEARNED))
    with db.read() as session:
        replay, canary = replay_and_canary(session, replay=100, canary=100, seed=0)
        queued = queued_rows(session, 45)
    assert len(canary) == 8  # at most a fifth of the 40 learned
    assert len(replay) == 32  # all the others
    assert not {s.id for s in replay} & {s.id for s in canary}
    assert all(s.id <= 40 for s in replay + canary)
    assert [s.id for s in queued] == list(range(41, 46))
    db.close()


def test_embedding_cache_round_trip_and_size_check(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.db")
    with db.write() as session:
        store(session, "image:x", 2, {"a" * 64: bytes(8)})
        store(session, "image:x", 2, {"a" * 64: bytes(8)})  # a duplicate is skipped
        with pytest.raises(ValueError, match="has 4 bytes, not 8"):
            store(session, "image:x", 2, {"b" * 64: bytes(4)})
    with db.read() as session:
        assert cached(session, "image:x", ["a" * 64, "c" * 64]) == {"a" * 64: bytes(8)}
        assert cached(session, "image:y", ["a" * 64]) == {}
    db.close()


def test_regress_replay_and_canary_come_from_one_uniform_reservoir(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.db")
    # 100 learned samples, each its own target: per-label shares would be meaningless.
    samples = [
        NewSample(hashlib.sha256(bytes([i])).hexdigest(), f"{i}.5", "vector", bytes(4), "", 4)
        for i in range(110)
    ]
    with db.write() as session:
        add_samples(session, samples)
        session.execute(update(Sample).where(Sample.id <= 100).values(state=SampleState.LEARNED))
    with db.read() as session:
        replay, canary = replay_and_canary(session, 30, 50, seed=3, per_label=False)
        again = replay_and_canary(session, 30, 50, seed=3, per_label=False)
        other = replay_and_canary(session, 30, 50, seed=4, per_label=False)
        everything, _ = replay_and_canary(session, 10**9, 0, seed=3, per_label=False)
    db.close()
    assert len(replay) == 30
    assert len(canary) == 20  # at most a fifth of the learned ones
    assert not {r.id for r in replay} & {r.id for r in canary}
    assert all(r.id <= 100 for r in replay + canary)  # learned only
    assert (replay, canary) == again
    assert [r.id for r in other[0]] != [r.id for r in replay]
    assert len(everything) == 100


def test_an_older_database_gains_the_new_update_columns_in_place(tmp_path: Path) -> None:
    """Columns added to a model since a file was made (``up_to_id``, ``resumed_from``,
    ``deferred``) are added at start-up; the rows already there keep their values, the new
    columns NULL or their server default."""
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE updates (id INTEGER PRIMARY KEY, state VARCHAR(20), reason VARCHAR(200),"
        " started_at FLOAT, finished_at FLOAT, base_version INTEGER, version INTEGER,"
        " sample_count INTEGER, error VARCHAR(4096), metrics JSON, gate JSON)"
    )
    con.execute("INSERT INTO updates VALUES (1, 'succeeded', 'x', 1, 2, 0, 1, 3, NULL, '{}', NULL)")
    con.commit()
    con.close()
    db = open_database(path)
    try:
        with db.read() as session:
            row = session.get_one(Update, 1)
            assert (
                row.state,
                row.sample_count,
                row.up_to_id,
                row.resumed_from,
                row.deferred,
            ) == (UpdateState.SUCCEEDED, 3, None, None, False)
        with db.write() as session:
            session.get_one(Update, 1).resumed_from = 1
    finally:
        db.close()
    reopened = open_database(path)  # a second start finds nothing to add
    reopened.close()
