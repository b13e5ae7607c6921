"""Driving the daemon into a labelled crash point while it publishes, and what must follow."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tailord.storage.crash import ENV
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


def base_data() -> Iterator[Path]:
    """A data directory holding version 0, made once: each test starts from a copy."""
    root = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
    maker = DaemonProcess(root)
    maker.start()
    assert maker.stop() == 0
    yield maker.data_dir
    shutil.rmtree(root, ignore_errors=True)


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
    log = daemon.log.read_text()
    assert f"crash point {step!r} reached" in log
    # The default model's update is appended in the daemon (daemon/updates/knn.py), so these
    # crash points are those of the in-daemon k-NN publish.
    assert "in the daemon" in log
    monkeypatch.delenv(ENV)
    return names


def crash_at_publish_step(
    daemon: DaemonProcess, base_data: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    shutil.copytree(base_data, daemon.data_dir, symlinks=True)  # version 0, no crash point
    names = _crash_while_publishing(daemon, monkeypatch, step, seed=1)

    # Even before any repair, current is a complete version: the flip is the commit point.
    assert check_current(daemon.data_dir) in (0, 1)

    daemon.start("--quiet-seconds", "3600")  # no new update: look at what the crash left
    expected = EXPECTED[step]
    assert daemon.version() == expected
    with daemon.client() as client:
        # Files the crash left in the inbox are taken once settled: [ingest] settle_seconds
        # after this start first sees them (by the monotonic clock, not their timestamps).
        wait_for(
            lambda: sum(sum(c.values()) for c in client.status().samples.values()) == len(names),
            30,
        )
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


def crash_while_removing_an_old_version(
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
