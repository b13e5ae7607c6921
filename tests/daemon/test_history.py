"""Reconciliation, history and swaps in-process, on a real SQLite file and real folders."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pytest
from sqlalchemy import select

from tailord.daemon.api import bodies
from tailord.daemon.events import EventBus, VersionChanged, VersionLoadFailed
from tailord.daemon.versions.history import History, HistoryError, collect_garbage
from tailord.daemon.versions.publish import ManifestFields, ensure_base, publish
from tailord.daemon.versions.reconcile import reconcile
from tailord.daemon.versions.serving import LoadFailed, Serving
from tailord.storage.db import Database, open_database
from tailord.storage.errors import VersionNotFound
from tailord.storage.models import Sample, Version, VersionEvent
from tailord.storage.samples import NewSample, add_samples
from tailord.storage.versions import SAMPLES_FILE, WEIGHTS, VersionStore
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update

SPEC = ModelSpec()


@dataclass
class Env:
    store: VersionStore
    db: Database
    serving: Serving
    events: EventBus
    history: History


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    db = open_database(tmp_path / "tailord.db")
    store = VersionStore(tmp_path)
    events = EventBus()
    serving = Serving(events)
    assert reconcile(store, db) is None  # a fresh data directory
    serving.load(store, ensure_base(store, db, SPEC))
    yield Env(store, db, serving, events, History(store, db, serving, events, SPEC, keep=3))
    db.close()


def _samples(env: Env, n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    new = []
    for i in range(n):
        payload = rng.normal(size=4).astype(np.float32).tobytes()
        digest = hashlib.sha256(payload).hexdigest()
        new.append(NewSample(digest, "cat" if i % 2 else "dog", "vector", payload, f"{i}", 16))
    with env.db.write() as session:
        add_samples(session, new)
        return [s.id for s in session.scalars(select(Sample).order_by(Sample.id))][-n:]


def _weights(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 4)).astype(np.float32)
    model = run_update(Model.base(SPEC), x, ["a", "b", "a", "b"], x[:0], [], UpdateParams())
    return model.to_bytes()


def _manifest(seed: int) -> ManifestFields:
    return ManifestFields(
        spec=SPEC, labels=["a", "b"], sample_count=4, metrics=bodies.UpdateMetrics(seconds=seed)
    )


def _publish(env: Env, seed: int, sample_ids: list[int] = []) -> int:  # noqa: B006
    staging = env.store.new_staging(f"c{seed}")
    (staging / WEIGHTS).write_bytes(_weights(seed))
    with env.db.read() as session:
        sha = [session.get_one(Sample, i).sha256 for i in sample_ids]
    (staging / SAMPLES_FILE).write_text("".join(s + "\n" for s in sha))
    parent = env.store.current_number()
    assert parent is not None
    return env.history.publish(  # as the updater does: then old versions are removed
        staging_name=staging.name,
        parent=parent,
        manifest=_manifest(seed),
        sample_ids=sample_ids,
        read_at=time.time(),
        record=lambda session, number: None,
        announce=lambda number: None,
    )


def _states(env: Env) -> dict[int | None, int]:
    out: dict[int | None, int] = {}
    with env.db.read() as session:
        for sample in session.scalars(select(Sample)):
            out[sample.learned_in] = out.get(sample.learned_in, 0) + 1
    return out


def _events(env: Env) -> list[tuple[str, int, int | None]]:
    with env.db.read() as session:
        rows = session.scalars(select(VersionEvent).order_by(VersionEvent.id))
        return [(e.kind, e.version, e.previous) for e in rows]


def test_publish_swaps_and_records(env: Env) -> None:
    ids = _samples(env, 4, seed=1)
    assert _publish(env, 1, ids) == 1
    served = env.serving.current
    assert served is not None
    assert served.number == 1
    assert env.store.current_number() == 1
    assert _states(env) == {1: 4}
    assert _events(env) == [("base", 0, None), ("published", 1, 0)]


def test_a_candidate_that_does_not_load_is_abandoned(env: Env) -> None:
    ids = _samples(env, 2, seed=2)
    staging = env.store.new_staging("junk")
    (staging / WEIGHTS).write_bytes(b"not safetensors at all")
    failed = env.events.subscribe()
    with pytest.raises(LoadFailed):
        publish(
            env.store,
            env.db,
            env.serving,
            staging_name="junk",
            parent=0,
            manifest=_manifest(2),
            sample_ids=ids,
        )
    assert env.store.current_number() == 0
    assert env.store.numbers() == [0]
    assert list(env.store.staging_dir.iterdir()) == []
    assert _states(env) == {None: 2}
    served = env.serving.current
    assert served is not None
    assert served.number == 0
    event = failed.get(timeout=1)
    assert event is not None
    assert event.type == "version.load_failed"
    assert isinstance(event.data, VersionLoadFailed)
    assert (event.data.version, event.data.serving) == (1, 0)
    assert env.serving.last_error is not None


def test_reconcile_adopts_a_flipped_version_without_a_row(env: Env) -> None:
    ids = _samples(env, 3, seed=3)
    with env.db.read() as session:
        sha = [session.get_one(Sample, i).sha256 for i in ids]
    staging = env.store.new_staging("c")
    (staging / WEIGHTS).write_bytes(_weights(3))
    (staging / SAMPLES_FILE).write_text("".join(s + "\n" for s in sha[:2]))
    env.store.publish(staging, 1, {"parent": 0, "sample_count": 2})
    env.store.set_current(1)  # and the daemon died before the row was committed
    assert reconcile(env.store, env.db) == 1
    assert _states(env) == {1: 2, None: 1}
    with env.db.read() as session:
        assert session.get_one(Version, 1).parent == 0


def test_reconcile_deletes_a_version_that_never_became_current(env: Env) -> None:
    staging = env.store.new_staging("c")
    (staging / WEIGHTS).write_bytes(_weights(4))
    env.store.publish(staging, 1, {"parent": 0})  # died before the flip
    assert reconcile(env.store, env.db) == 0
    assert env.store.numbers() == [0]


def test_reconcile_falls_back_from_a_corrupt_current_and_requeues(env: Env) -> None:
    first = _samples(env, 2, seed=5)
    _publish(env, 5, first)
    second = _samples(env, 2, seed=6)
    _publish(env, 6, second)
    weights = env.store.versions_dir / "2" / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert reconcile(env.store, env.db) == 1  # the parent, not the newest (there is none)
    assert env.store.current_number() == 1
    assert _states(env) == {1: 2, None: 2}  # what version 2 learned is queued again
    assert _events(env)[-1] == ("fallback", 1, 2)


def test_reconcile_marks_a_lost_folder_removed(env: Env) -> None:
    _publish(env, 7)
    _publish(env, 8)
    os.rename(env.store.versions_dir / "1", env.store.root / "elsewhere")
    assert reconcile(env.store, env.db) == 2
    with env.db.read() as session:
        assert session.get_one(Version, 1).removed_at is not None


def test_garbage_collection_keeps_newest_pinned_current_and_parent(env: Env) -> None:
    for seed in range(10, 15):
        _publish(env, seed)  # versions 1..5; keep = 3 leaves 3, 4, 5
    assert env.store.numbers() == [3, 4, 5]
    env.history.pin(3)
    env.history.rollback(3)
    for seed in range(20, 24):
        _publish(env, seed)  # 6 (parent 3), 7, 8, 9
    assert env.store.numbers() == [3, 7, 8, 9]
    env.history.rollback(7)
    assert collect_garbage(env.store, env.db, 1) == [8]  # 9 newest, 7 current, 3 pinned
    env.history.pin(3, pinned=False)
    assert env.store.numbers() == [3, 7, 9]  # still among the newest three left
    assert collect_garbage(env.store, env.db, 1) == [3]
    listing = env.history.listing()  # as GET /v1/versions lists them: oldest first
    assert [v.number for v in listing] == list(range(10))
    assert [v.number for v in listing if not v.removed] == [7, 9]
    assert [v.number for v in listing if v.current] == [7]
    assert [v.number for v in listing if v.pinned] == []
    assert listing[-1].metrics == bodies.UpdateMetrics(seconds=23)  # read back from the manifest
    assert listing[0].metrics == bodies.UpdateMetrics()  # version 0: no update made it
    assert bodies.encode(listing[0].metrics) == b"{}\n"  # as its manifest always said
    detail = env.history.detail(9)
    assert detail is not None
    assert detail.removed is False
    assert detail.manifest["version"] == 9
    assert env.history.detail(10) is None


def test_rollback_flips_current_and_swaps(env: Env) -> None:
    ids = _samples(env, 2, seed=30)
    _publish(env, 30, ids)
    _publish(env, 31)
    changes = env.events.subscribe()
    assert env.history.rollback() == bodies.RollbackResult(1, 2, changed=True)
    changed = changes.get(timeout=1)
    assert changed is not None
    assert changed.data == VersionChanged(version=1, previous=2, reason="rollback")
    assert changed.envelope().data == {"version": 1, "previous": 2, "reason": "rollback"}
    served = env.serving.current
    assert served is not None
    assert served.number == 1
    assert env.store.current_number() == 1
    assert env.history.rollback(2).version == 2
    assert env.history.rollback(2).changed is False
    assert _events(env)[-2:] == [("rollback", 1, 2), ("rollback", 2, 1)]
    assert _states(env) == {1: 2}  # rollbacks do not touch what was learned
    with pytest.raises(VersionNotFound):
        env.history.rollback(99)
    env.history.rollback(0)
    with pytest.raises(HistoryError, match="no parent"):
        env.history.rollback()


def test_rollback_to_a_corrupt_version_keeps_serving_the_current(env: Env) -> None:
    _publish(env, 40)
    _publish(env, 41)
    (env.store.versions_dir / "1" / WEIGHTS).write_bytes(b"flipped")
    with pytest.raises(LoadFailed, match="sha256"):
        env.history.rollback(1)
    served = env.serving.current
    assert served is not None
    assert served.number == 2
    assert env.store.current_number() == 2


def test_import_base_publishes_a_child_of_current(env: Env) -> None:
    result = env.history.import_base(_weights(50))
    assert result == bodies.ImportResult(1, 0)
    assert env.store.read(1).manifest["imported"] is True
    served = env.serving.current
    assert served is not None
    assert served.model.labels == ("a", "b")
    with pytest.raises(HistoryError, match="not a usable"):
        env.history.import_base(b"\x80\x04pickle")
    other = Model.base(ModelSpec(head="linear")).to_bytes()
    with pytest.raises(HistoryError, match="same \\[model\\]"):
        env.history.import_base(other)
    assert env.store.numbers() == [0, 1]


def test_versions_config(tmp_path: Path) -> None:
    from tailord.daemon.config import load_config
    from tailord.daemon.errors import ConfigError

    path = tmp_path / "t.toml"
    path.write_text('[versions]\nkeep = 2\nbase = "~/base.safetensors"\n')
    config = load_config(path, data_dir=tmp_path)
    assert config.versions.keep == 2
    assert config.versions.base_file == Path.home() / "base.safetensors"
    assert load_config(None, data_dir=tmp_path).versions.base_file is None
    path.write_text("[versions]\nkeep = 0\n")
    with pytest.raises(ConfigError, match="keep = 0: must be an integer >= 1"):
        load_config(path, data_dir=tmp_path)


def test_manifests_keep_their_keys(env: Env) -> None:
    base = env.store.read(0).manifest
    assert base["metrics"] == {}  # written even when empty
    assert "update" not in base  # optional keys left at their default are not written
    assert base["spec"] == msgspec.json.decode(msgspec.json.encode(SPEC))
    _publish(env, 60)
    stored = env.store.read(1).manifest
    assert set(stored) == {
        "version",
        "parent",
        "created_at",
        "published_at",
        "spec",
        "labels",
        "sample_count",
        "metrics",
        "files",
    }
    assert stored["metrics"] == {"seconds": 60.0}
