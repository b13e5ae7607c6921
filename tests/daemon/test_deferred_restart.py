"""A request pending at a restart: one asked to run now still runs at once; a deferred one
(``?defer=true``) keeps waiting for the policy's conditions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tailord.daemon.config import Config, load_config
from tailord.daemon.events import EventBus
from tailord.daemon.service import Daemon
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.daemon.versions.publish import ensure_base
from tailord.daemon.versions.reconcile import reconcile
from tailord.daemon.versions.serving import Serving
from tailord.storage.db import open_database
from tailord.storage.samples import NewSample, add_samples
from tailord.storage.versions import VersionStore
from tailord.trainer.vectors import vector_to_bytes


def _pending_request(config: Config, *, deferred: bool, joined: bool) -> None:
    """What a daemon leaves when it stops with a request accepted and not yet run."""
    config.data_dir.mkdir(parents=True)
    db = open_database(config.database)
    store = VersionStore(config.data_dir)
    ensure_base(store, db, config.model)
    rng = np.random.default_rng(1)
    samples = [
        NewSample(f"{i:064d}", "ab"[i % 2], "vector", vector_to_bytes(v), f"{i}.npy", 32)
        for i, v in enumerate(rng.normal(0, 1, (4, 8)).astype(np.float32))
    ]
    with db.write() as session:
        add_samples(session, samples)
    serving = Serving()
    serving.load(store, reconcile(store, db))
    history = History(store, db, serving, EventBus(), config.model, config.versions.keep)
    updater = Updater(config, db, store, history, EventBus(), lambda: False)
    updater.request(deferred=deferred)
    if joined:  # a plain request joins the pending one: it is to run now
        updater.request()
    db.close()


@pytest.mark.parametrize(
    ("deferred", "joined", "manual"),
    [(False, False, True), (True, False, False), (True, True, True)],
)
def test_a_pending_request_runs_at_once_after_a_restart_unless_deferred(
    short_tmp: Path, deferred: bool, joined: bool, manual: bool
) -> None:
    config = load_config(
        data_dir=short_tmp / "data", inbox=short_tmp / "inbox", socket=short_tmp / "s.sock"
    )
    _pending_request(config, deferred=deferred, joined=joined)
    daemon = Daemon(config)
    try:
        daemon.startup()
        assert daemon.updater.has_pending()
        assert daemon._pacer is not None
        assert daemon._pacer.manual is manual  # manual: skips the conditions
    finally:
        daemon.shutdown()
