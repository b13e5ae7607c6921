"""The guard on a real updater and real worker processes, with the power supply read from
a fake ``/sys``: an automatic update expires when the machine goes on battery, the next one
resumes it from its checkpoint, and the result is bit-equal to an uninterrupted update."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import safetensors.torch
import torch
from sqlalchemy import select

from tailord.daemon.conditions.monitor import Monitor
from tailord.daemon.config import Config, load_config
from tailord.daemon.events import EventBus, UpdateResumed
from tailord.daemon.updates.guard import Guard
from tailord.daemon.updates.resume import resumable
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.daemon.versions.publish import ensure_base
from tailord.daemon.versions.reconcile import reconcile
from tailord.daemon.versions.serving import Serving
from tailord.storage.db import open_database
from tailord.storage.models import UpdateEvent
from tailord.storage.samples import NewSample, add_samples
from tailord.storage.states import UpdateState
from tailord.storage.versions import VersionStore
from tailord.trainer.vectors import vector_to_bytes
from tests.conftest import wait_for

pytestmark = pytest.mark.slow  # worker processes training an mlp head

EPOCHS = 8


def _config(root: Path) -> Config:
    config = load_config(data_dir=root / "data", socket=root / "s.sock")
    return msgspec.structs.replace(
        config,
        model=msgspec.structs.replace(config.model, head="mlp"),
        update=msgspec.structs.replace(
            config.update, epochs=EPOCHS, batch_size=2, learning_rate=0.001, device="cpu"
        ),
        policy=msgspec.structs.replace(config.policy, require_power=True, sample_seconds=0.2),
    )


def _queue(root: Path) -> None:
    config = _config(root)
    config.data_dir.mkdir(parents=True)
    db = open_database(config.database)
    ensure_base(VersionStore(config.data_dir), db, config.model)
    rng = np.random.default_rng(3)
    samples = []
    for i in range(300):
        label = "ab"[i % 2]
        vector = (rng.normal(0, 0.3, 8) + (2.0 if label == "a" else -2.0)).astype(np.float32)
        payload = vector_to_bytes(vector)
        samples.append(NewSample(f"{i:064d}", label, "vector", payload, f"{i}.npy", 32))
    with db.write() as session:
        add_samples(session, samples)
    db.close()


def _updater(root: Path) -> Updater:
    config = _config(root)
    db = open_database(config.database)
    store = VersionStore(config.data_dir)
    serving = Serving()
    serving.load(store, reconcile(store, db))
    events = EventBus()
    history = History(store, db, serving, events, config.model, config.versions.keep)
    return Updater(config, db, store, history, events, lambda: False)


def _supply(root: Path, status: str) -> None:
    folder = root / "sys" / "class" / "power_supply" / "BAT0"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "type").write_text("Battery\n")
    (folder / "capacity").write_text("80\n")
    (folder / "status").write_text(status + "\n")


def _weights(updater: Updater) -> dict[str, torch.Tensor]:
    path = updater.config.data_dir / "versions" / "1" / "weights.safetensors"
    return safetensors.torch.load(path.read_bytes())


def test_on_battery_the_update_expires_and_the_next_resumes_it_bit_equal(
    short_tmp: Path,
) -> None:
    a, b, sysroot = short_tmp / "a", short_tmp / "b", short_tmp / "root"
    _queue(a)
    shutil.copytree(a, b, symlinks=True)
    _supply(sysroot, "Charging")
    updater = _updater(a)
    subscription = updater.events.subscribe()
    monitor = Monitor(updater.config.policy, sysroot)
    guard = Guard(updater.config.policy, monitor, updater, list, lambda: None)
    ticking = threading.Event()

    def tick() -> None:
        while not ticking.wait(0.2):
            guard.tick()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        guard.watch(manual=False)
        runner = threading.Thread(target=updater.run, args=("automatic",))
        runner.start()

        def epochs_done() -> int:
            progress = updater.progress
            if progress is None or progress.kind == "began":
                return 0
            return progress.epoch if progress.kind == "epoch" else progress.epoch - 1

        wait_for(lambda: epochs_done() >= 2, timeout=180, interval=0.02)
        unplugged = time.monotonic()
        _supply(sysroot, "Discharging")
        runner.join(timeout=60)
        assert not runner.is_alive()
        stopped = time.monotonic() - unplugged
        first = updater.last_update()
        assert first is not None
        assert first.state == UpdateState.EXPIRED
        assert first.error is not None
        assert first.error.startswith("expired at epoch ")
        assert first.error.endswith("power (on battery (80%)); resumes when on mains or charged")
        assert stopped < 10  # a tick every 0.2 s, the worker polled every 0.2 s
        assert (updater.checkpoints / "checkpoint.safetensors").exists()
        saved = json.loads((updater.checkpoints / "checkpoint.json").read_text())
        # Stopped between two mini-batches, with its cost so far.
        assert isinstance(first.metrics.batches, int)
        assert first.metrics.batches > 2 * 100  # two epochs at least (>= 135 batches each)
        assert isinstance(first.metrics.cpu_seconds, float)
        assert first.metrics.cpu_seconds > 0

        # On battery, nothing resumes yet: the guard would expire it at once.
        assert not monitor.machine()[0].ok
        _supply(sysroot, "Charging")
        resume = resumable(updater.db, updater.store.current_number(), updater.checkpoints)
        assert resume is not None
        assert resume.update_id == first.id
        guard.watch(manual=False)
        assert updater.run("automatic", resume) == 1
        second = updater.last_update()
        assert second is not None
        assert (second.state, second.resumed_from) == (UpdateState.SUCCEEDED, first.id)
        curve = second.metrics.curve
        assert [p.epoch for p in curve] == list(range(1, EPOCHS + 1))
        with updater.db.read() as session:
            trained = session.scalars(
                select(UpdateEvent.epoch).where(
                    UpdateEvent.update_id == first.id, UpdateEvent.kind == "epoch"
                )
            ).all()
            began, began_batch = session.execute(
                select(UpdateEvent.epoch, UpdateEvent.batch).where(
                    UpdateEvent.update_id == second.id, UpdateEvent.kind == "began"
                )
            ).one()
        # Epochs done are not redone: the resumed one begins where the expired one ended,
        # in the middle of an epoch (see the batches, below).
        assert began is not None
        assert began >= 2
        assert began == max(trained)
        assert (began, began_batch) == (saved["epoch"], saved["batch"])  # says where
        resumed = [e.data for e in iter(lambda: subscription.get(timeout=0.1), None)]
        assert UpdateResumed(second.id, first.id) in resumed
    finally:
        ticking.set()
        ticker.join()
        subscription.close()
        updater.db.close()

    # The same queue, uninterrupted, with the same seed: the same weights, bit for bit.
    plain = _updater(b)
    try:
        assert plain.run("automatic") == 1
        whole = plain.last_update()
        assert whole is not None
        # No mini-batch trained twice: the expired and the resumed one did the plain one's.
        assert isinstance(second.metrics.batches, int)
        assert first.metrics.batches + second.metrics.batches == whole.metrics.batches
        ours, theirs = _weights(updater), _weights(plain)
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert torch.equal(ours[name], theirs[name]), name
    finally:
        plain.db.close()


def test_a_manual_update_is_never_expired(short_tmp: Path) -> None:
    a, sysroot = short_tmp / "a", short_tmp / "root"
    _queue(a)
    _supply(sysroot, "Discharging")  # on battery from the start
    updater = _updater(a)
    monitor = Monitor(updater.config.policy, sysroot)
    guard = Guard(updater.config.policy, monitor, updater, list, lambda: None)
    guard.watch(manual=True)
    ticking = threading.Event()

    def tick() -> None:
        while not ticking.wait(0.2):
            guard.tick()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        assert updater.run("requested") == 1
    finally:
        ticking.set()
        ticker.join()
        updater.db.close()
