"""Forgetting in the database, on a real SQLite file: rows and embeddings gone, tombstones
keep the content out, and the file's bytes no longer hold it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tailord.storage.db import open_database
from tailord.storage.embeddings import store as store_embeddings
from tailord.storage.forget import compact, erase, find, release
from tailord.storage.models import Embedding, Sample
from tailord.storage.samples import NewSample, add_samples


def sample(payload: bytes, label: str) -> NewSample:
    return NewSample(hashlib.sha256(payload).hexdigest(), label, "text", payload, "x", len(payload))


def files_holding(folder: Path, needle: bytes) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_file() and needle in p.read_bytes()]


def test_erased_content_is_gone_from_every_file_and_not_stored_again(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.db")
    secret = b"SECRET-" + os.urandom(24).hex().encode()
    kept = [sample(f"kept {i} ".encode() * 20, "a") for i in range(200)]
    doomed = sample(secret * 8, "b")
    with db.write() as s:
        add_samples(s, [*kept[:100], doomed, *kept[100:]])
        store_embeddings(s, "bb", 2, {doomed.sha256: secret[:8], kept[0].sha256: b"12345678"})
    # Checkpointed into the main file too, as a long-running daemon's would be.
    compact(db)
    assert files_holding(tmp_path, secret) == ["t.db"]

    with db.read() as s:
        found = find(s, [], [doomed.sha256], None)
        assert [f.sha256 for f in found] == [doomed.sha256]
        assert {f.id for f in find(s, [1, 2], [], "b")} == {1, 2, found[0].id}
    with db.write() as s:
        erase(s, found)
    assert files_holding(tmp_path, secret)  # zeroed in the b-tree, not yet in the main file
    compact(db)
    assert files_holding(tmp_path, secret) == []
    assert (tmp_path / "t.db-wal").stat().st_size == 0
    with db.read() as s:
        assert s.get(Sample, found[0].id) is None
        assert s.query(Embedding).count() == 1  # only the kept sample's
        assert s.query(Sample).count() == 200

    with db.write() as s:
        again = add_samples(s, [doomed, sample(b"new", "a")])
    assert (again.added, again.forgotten) == (1, 1)
    with db.write() as s:
        release(s, [doomed.sha256])
        again = add_samples(s, [doomed])
    assert (again.added, again.forgotten) == (1, 0)
    db.close()
