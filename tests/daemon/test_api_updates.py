"""Update requests get their id at once: the Updater's side of ``POST /v1/update``."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import numpy as np
import pytest

from tailord.daemon.api import bodies
from tailord.daemon.api.context import ApiContext
from tailord.daemon.api.reads import status
from tailord.daemon.config import load_config
from tailord.daemon.events import Event, EventBus, UpdateBegan, UpdateFinished
from tailord.daemon.inbox.stats import IngestStats
from tailord.daemon.inbox.watcher import PendingPaths
from tailord.daemon.updates.requested import NothingQueued
from tailord.daemon.updates.rows import Ending, describe
from tailord.daemon.updates.running import StopRequest
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.daemon.versions.publish import ensure_base
from tailord.daemon.versions.reconcile import reconcile
from tailord.daemon.versions.serving import Serving
from tailord.storage.db import open_database
from tailord.storage.models import Update, UpdateState
from tailord.storage.samples import NewSample, add_samples, mark_learned, queued
from tailord.storage.versions import VersionStore
from tailord.trainer.vectors import vector_to_bytes


def _updater(root: Path) -> tuple[Updater, EventBus]:
    config = load_config(data_dir=root / "data", socket=root / "s.sock")
    config.data_dir.mkdir(parents=True)
    db = open_database(config.database)
    store = VersionStore(config.data_dir)
    ensure_base(store, db, config.model)
    serving = Serving()
    serving.load(store, reconcile(store, db))
    events = EventBus()
    history = History(store, db, serving, events, config.model, config.versions.keep)
    return Updater(config, db, store, history, events, lambda: False), events


def _add(updater: Updater, n: int) -> None:
    rng = np.random.default_rng(n)
    samples = []
    for i in range(n):
        payload = vector_to_bytes(rng.normal(size=4).astype(np.float32))
        label = "ab"[i % 2]
        samples.append(NewSample(f"{n:02d}{i:062d}", label, "vector", payload, f"{i}.npy", 16))
    with updater.db.write() as session:
        add_samples(session, samples)


@pytest.mark.slow
def test_a_request_has_an_id_before_the_update_runs(short_tmp: Path) -> None:
    updater, events = _updater(short_tmp)
    with pytest.raises(NothingQueued, match="inbox"):
        updater.request()
    _add(updater, 6)

    first = updater.request()
    assert first.state == UpdateState.PENDING
    assert updater.request().id == first.id, "a second request joins the pending one"
    assert updater.describe(first.id) == first
    assert updater.describe(first.id + 1) is None
    waited = updater.wait(first.id, timeout=0.3)
    assert waited is not None
    assert waited.state == UpdateState.PENDING

    finished = threading.Event()
    results: list[bodies.UpdateInfo | None] = []

    def waiter() -> None:
        results.append(updater.wait(first.id, timeout=120))
        finished.set()

    threading.Thread(target=waiter, daemon=True).start()
    subscription = events.subscribe()
    assert updater.run("policy") == 1  # the pending row is the one that runs
    assert finished.wait(10)
    result = results[0]
    assert result is not None
    assert result.id == first.id
    assert result.state == UpdateState.SUCCEEDED
    assert result.version == 1
    assert result.reason == "requested"
    assert result.metrics.curve == []  # a k-NN head: no loss curve, but the key
    began = subscription.get(timeout=1)
    assert began is not None
    assert began.type == "update.began"
    assert isinstance(began.data, UpdateBegan)
    assert began.data.update == first.id
    assert not updater.has_pending()


def test_a_request_whose_samples_were_learned_meanwhile_ends_failed(short_tmp: Path) -> None:
    updater, _ = _updater(short_tmp)
    _add(updater, 2)
    pending = updater.request()
    with updater.db.write() as session:
        mark_learned(session, [s.id for s in queued(session)], 0)
    assert updater.run("requested") is None
    info = updater.describe(pending.id)
    assert info is not None
    assert info.state == UpdateState.FAILED
    assert info.error is not None
    assert "nothing was queued" in info.error
    assert not updater.has_pending()


def test_a_row_from_before_the_gate_metric_is_described_as_it_was_sent() -> None:
    # Rows written before the gate's ``metric``/``enabled`` and before ``encode_seconds``
    # existed: the wire leaves out what the row does not have, and sends its nulls as nulls.
    old_gate = {
        "promote": False,
        "reason": "worse",
        "holdout_samples": 3,
        "holdout_candidate": 0.5,
        "holdout_current": 1.0,
        "canary_samples": 0,
        "canary_candidate": None,
        "canary_current": None,
    }
    old_metrics = {
        "seconds": 1.5,
        "replayed": 0,
        "curve": [{"epoch": 1, "loss": 0.5, "accuracy": None}],
    }
    row = Update(
        id=7,
        state=UpdateState.REJECTED,
        reason="policy",
        started_at=10.0,
        finished_at=12.0,
        base_version=1,
        version=None,
        sample_count=4,
        error="gate: worse",
        metrics=old_metrics,
        gate=old_gate,
    )
    wire = msgspec.json.decode(bodies.encode(describe(row, None)))
    assert wire == {
        "id": 7,
        "state": "rejected",
        "reason": "policy",
        "started_at": 10.0,
        "finished_at": 12.0,
        "base_version": 1,
        "version": None,
        "samples": 4,
        "error": "gate: worse",
        "metrics": old_metrics,
        "gate": old_gate,
        "progress": None,
        "from": "current",
        "resumed_from": None,
    }
    # ``params`` too is left out: the row is from before they were kept.
    assert [*wire, "params"] == list(bodies.UpdateInfo.__struct_encode_fields__)


@pytest.mark.parametrize("ending", ["succeeded", "cancelled"])
def test_whoever_hears_an_update_finish_finds_it_no_longer_running(
    short_tmp: Path, ending: str
) -> None:
    # A listener runs on the publisher's thread, at the moment the event is published: what
    # it reads is what the quickest client (``?wait=true``, an SSE reader) can read.
    updater, events = _updater(short_tmp)
    _add(updater, 6)
    ctx = ApiContext(
        db=updater.db,
        store=updater.store,
        serving=updater.history.serving,
        updater=updater,
        history=updater.history,
        events=events,
        ingest=IngestStats(),
        pending=PendingPaths(),
        policy_reason=lambda: "waiting for samples",
        requested=lambda: None,
    )
    seen: list[tuple[int | None, bodies.Status]] = []

    def on_event(event: Event) -> None:
        data = event.data
        if isinstance(data, UpdateBegan) and ending == "cancelled":
            stop = StopRequest(Ending(UpdateState.CANCELLED, error="cancelled by a test"))
            assert updater.stop_running(data.update, stop)
        if isinstance(data, UpdateFinished):
            seen.append((updater.running, status(ctx)))

    events.listen(on_event)
    updater.run("requested")
    assert len(seen) == 1, "one finished event"
    running, now = seen[0]
    assert now.last_update is not None
    assert now.last_update.state == ending, "the row is recorded before the event"
    assert running is None
    assert now.state == "idle"
    assert now.update is None
    assert now.policy == "waiting for samples", "not a running update's sentence"
