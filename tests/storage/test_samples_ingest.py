"""Adding samples: dedupe, relabel, rejections, counts and paging, on a real SQLite file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tailord.storage.db import open_database
from tailord.storage.models import Version
from tailord.storage.samples import (
    NewRejection,
    NewSample,
    add_rejections,
    add_samples,
    counts,
    list_samples,
    mark_learned,
    queued_totals,
    rejection_count,
    unmoved_rejections,
)


def sample(payload: bytes, label: str, source: str = "x") -> NewSample:
    digest = hashlib.sha256(payload).hexdigest()
    return NewSample(digest, label, "text", payload, source, len(payload))


def test_dedupe_relabel_counts_and_pages(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.db")
    with db.write() as s:
        first = add_samples(s, [sample(b"a", "x"), sample(b"b", "x"), sample(b"a", "x")])
    assert (first.added, first.duplicates, first.relabeled) == (2, 1, 0)
    with db.write() as s:
        again = add_samples(s, [sample(b"a", "x"), sample(b"b", "y"), sample(b"c", "y")], at=5.0)
    assert (again.added, again.duplicates, again.relabeled) == (1, 1, 1)
    with db.read() as s:
        assert counts(s) == {"queued": {"x": 1, "y": 2}}
        assert queued_totals(s) == (3, 3)
        page = list_samples(s, limit=2)
        assert [row["label"] for row in page] == ["x", "y"]
        assert page[1]["previous_label"] == "x"
        assert page[1]["relabeled_at"] == 5.0
        assert "payload" not in page[0]
        rest = list_samples(s, after_id=int(page[-1]["id"]))  # type: ignore[call-overload]
        assert [row["source"] for row in rest] == ["x"]
        assert [row["label"] for row in list_samples(s, label="y", state="queued")] == ["y", "y"]
        assert list_samples(s, state="learned") == []
    db.close()


def test_a_sample_relabeled_while_an_update_trained_stays_queued(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.db")
    with db.write() as s:
        add_samples(s, [sample(b"a", "x"), sample(b"b", "x"), sample(b"c", "x")], at=1.0)
        add_samples(s, [sample(b"c", "z")], at=2.0)  # relabeled before the update read it
        s.add(Version(number=1, parent=0, manifest={}))
    with db.read() as s:
        ids = [int(row["id"]) for row in list_samples(s)]  # type: ignore[call-overload]
    # The update read the queue at t=10; "b" was relabeled at t=12, while it trained.
    with db.write() as s:
        add_samples(s, [sample(b"b", "y")], at=12.0)
    with db.write() as s:
        assert mark_learned(s, ids, 1, read_at=10.0) == 2
    with db.read() as s:
        assert counts(s) == {"learned": {"x": 1, "z": 1}, "queued": {"y": 1}}
    db.close()


def test_rejections_recorded_and_unmoved_ones_listed(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.db")
    with db.write() as s:
        add_rejections(
            s,
            [
                NewRejection("cat/a.json", 3, 10, "bad; fix it", moved=True),
                NewRejection("cat/b.json", 4, 11, "bad; fix it", moved=False),
            ],
        )
    with db.read() as s:
        assert rejection_count(s) == 2
        assert unmoved_rejections(s) == {("cat/b.json", 4, 11)}
    db.close()


def test_large_batches_count_new_known_and_relabeled_rows(tmp_path: Path) -> None:
    # Over two full multi-row statements plus a remainder, so each way of inserting meets
    # rows that are already stored.
    db = open_database(tmp_path / "t.db")
    with db.write() as s:
        first = add_samples(s, [sample(b"%d" % i, "x") for i in range(0, 2500, 2)], at=1.0)
    assert (first.added, first.duplicates, first.relabeled) == (1250, 0, 0)
    batch = [sample(b"%d" % i, "y" if i % 10 == 0 else "x") for i in range(2500)]
    with db.write() as s:
        again = add_samples(s, batch, at=2.0)
    assert (again.added, again.duplicates, again.relabeled) == (1250, 1000, 250)
    with db.read() as s:
        assert counts(s) == {"queued": {"x": 2250, "y": 250}}
        rows = list_samples(s, limit=10_000)
    assert len(rows) == 2500
    by_source = {(row["sha256"], row["label"]): row["created_at"] for row in rows}
    assert by_source[(sample(b"1", "x").sha256, "x")] == 2.0
    assert by_source[(sample(b"0", "y").sha256, "y")] == 1.0
    assert by_source[(sample(b"2", "x").sha256, "x")] == 1.0
    db.close()
