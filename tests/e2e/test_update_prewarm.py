"""[worker] prewarm: an idle worker waits with torch loaded, takes the update, and is replaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast


def spawned_workers(pid: int) -> set[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = set()
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"multiprocessing.spawn" in cmdline:
            found.add(int(child))
    return found


def test_prewarmed_worker_runs_the_update(daemon: DaemonProcess, short_tmp: Path) -> None:
    config = short_tmp / "t.toml"
    # A trained head: a k-NN update is learned in the daemon, with no worker to prewarm.
    config.write_text('[model]\nhead = "linear"\n[worker]\nprewarm = true\n')
    daemon.start("--config", str(config))
    assert daemon.process is not None
    pid = daemon.process.pid
    first = wait_for(lambda: spawned_workers(pid), timeout=30)
    assert isinstance(first, set)
    assert len(first) == 1
    for label, vectors in clusters(np.random.default_rng(0), 5).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    wait_for(lambda: daemon.version() == 1, timeout=90)
    # The warm worker did the update and exited; a fresh one waits for the next.
    wait_for(lambda: spawned_workers(pid) and not spawned_workers(pid) & first, timeout=30)
    assert daemon.stop() == 0
