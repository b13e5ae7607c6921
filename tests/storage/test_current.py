"""``load_current``: one consistent, verified version, even while current flips."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tailord.storage import load_current
from tailord.storage.errors import CorruptVersion, VersionNotFound
from tailord.storage.versions import WEIGHTS, VersionStore


def _weights(number: int) -> bytes:
    return f"version {number} ".encode() * 1000


def _publish(store: VersionStore, number: int) -> None:
    staging = store.new_staging(f"c{number}")
    (staging / WEIGHTS).write_bytes(_weights(number))
    store.publish(staging, number, {"parent": number - 1})
    store.set_current(number)


def test_load_current_reads_the_verified_version(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    _publish(store, 1)
    _publish(store, 2)
    current = load_current(tmp_path)
    assert current.number == 2
    assert current.manifest["parent"] == 1
    assert current.weights == _weights(2)
    assert current.folder.resolve() == (tmp_path / "versions" / "2").resolve()


def test_load_current_explains_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(VersionNotFound, match="data directory"):
        load_current(tmp_path)
    store = VersionStore(tmp_path)
    _publish(store, 1)
    (tmp_path / "versions" / "1" / WEIGHTS).write_bytes(b"tampered")
    with pytest.raises(CorruptVersion):
        load_current(tmp_path)


def test_reads_stay_consistent_while_versions_come_and_go(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    _publish(store, 1)
    stop = threading.Event()

    def publisher() -> None:
        # Like the daemon: publish, flip, and remove all but current and its parent.
        for number in range(2, 40):
            if stop.is_set():
                return
            _publish(store, number)
            store.discard(number - 2)

    thread = threading.Thread(target=publisher)
    thread.start()
    seen = []
    try:
        while thread.is_alive():
            current = load_current(tmp_path)
            assert current.weights == _weights(current.number)
            assert current.manifest["version"] == current.number
            seen.append(current.number)
    finally:
        stop.set()
        thread.join()
    assert seen == sorted(seen)
    assert len(set(seen)) > 5, "the publisher should have flipped current meanwhile"
    assert seen[-1] <= 39
