"""The daemon killed at each labelled step of publishing: old or new version, never a mix."""

from __future__ import annotations

import signal
import sqlite3

import numpy as np
import pytest

from tailord.storage.crash import ENV, STEPS
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for
from tests.e2e.version_checks import (
    check_current,
    check_database,
    check_no_leftovers,
    learned_in,
)

# Which version is current after a crash at each step while publishing version 1 from 0.
EXPECTED = {
    "staged": 0,
    "files-synced": 0,
    "folder-synced": 0,
    "renamed": 0,
    "versions-synced": 0,
    "temp-link": 0,
    "flipped": 1,
    "committed": 1,
}


def test_every_publish_step_is_covered() -> None:
    assert set(EXPECTED) | {"gc-removed"} == set(STEPS)


def _drop(daemon: DaemonProcess, seed: int, n: int = 3) -> list[str]:
    names = []
    for label, vectors in clusters(np.random.default_rng(seed), n).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"s{seed}-{i}.npy", npy_bytes(vector))
            names.append(f"{label}/s{seed}-{i}.npy")
    return names


def _crash_while_publishing(
    daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch, step: str, seed: int
) -> list[str]:
    monkeypatch.setenv(ENV, step)
    daemon.start()
    names = _drop(daemon, seed)
    assert daemon.process is not None
    wait_for(lambda: daemon.process is not None and daemon.process.poll() is not None, 90)
    assert daemon.process.returncode == -signal.SIGKILL
    daemon.process = None
    assert f"crash point {step!r} reached" in daemon.log.read_text()
    monkeypatch.delenv(ENV)
    return names


@pytest.mark.parametrize("step", list(EXPECTED))
def test_crash_at_each_publish_step(
    daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    daemon.start()  # version 0 made without crash points
    assert daemon.stop() == 0
    names = _crash_while_publishing(daemon, monkeypatch, step, seed=1)

    # Even before any repair, current is a complete version: the flip is the commit point.
    assert check_current(daemon.data_dir) in (0, 1)

    daemon.start("--quiet-seconds", "3600")  # no new update: look at what the crash left
    expected = EXPECTED[step]
    assert daemon.version() == expected
    assert daemon.stop() == 0
    assert check_current(daemon.data_dir) == expected
    check_no_leftovers(daemon.data_dir)
    states = check_database(daemon.data_dir)
    learned = learned_in(daemon.data_dir)
    assert sorted(learned) == sorted(names)
    if expected == 1:
        # The update learned what was queued when it began: maybe not all six yet.
        listed = (daemon.data_dir / "versions" / "1" / "samples.txt").read_text().split()
        assert states["learned"] == len(listed) > 0
        assert set(learned.values()) <= {1, None}
    else:
        assert states == {"queued": len(names)}
        assert not (daemon.data_dir / "versions" / "1").exists()


def test_crash_while_removing_an_old_version(
    daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = daemon.root / "keep1.toml"
    config.write_text("[versions]\nkeep = 1\n")
    daemon.extra_args = ["--config", str(config)]
    daemon.start()
    _drop(daemon, seed=2)
    wait_for(lambda: daemon.version() == 1, 90)
    assert daemon.stop() == 0
    # Publishing version 2 makes version 0 neither kept, nor current, nor its parent.
    _crash_while_publishing(daemon, monkeypatch, "gc-removed", seed=3)

    daemon.start("--quiet-seconds", "3600")
    assert daemon.version() == 2
    assert daemon.stop() == 0
    assert check_current(daemon.data_dir) == 2
    check_no_leftovers(daemon.data_dir)
    listed = [
        (daemon.data_dir / "versions" / str(n) / "samples.txt").read_text().split() for n in (1, 2)
    ]
    assert check_database(daemon.data_dir)["learned"] == sum(map(len, listed))
    with sqlite3.connect(daemon.data_dir / "tailord.db") as conn:
        removed = conn.execute("SELECT number FROM versions WHERE removed_at IS NOT NULL")
        assert [n for (n,) in removed] == [0]
