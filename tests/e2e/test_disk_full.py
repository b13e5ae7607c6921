"""A full disk under the data directory: the daemon keeps serving, nothing is lost.

The data directory is a real 20 MiB tmpfs (root here may mount one; elsewhere the tests
skip), filled with a real file until ENOSPC. The inbox stays on the ordinary disk.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProcess, npy_bytes, wait_for

pytestmark = pytest.mark.slow

DIM = 16


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "20m") -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        check=False,
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Write a file in ``folder`` until the file system has ``leave`` bytes free (or fewer)."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("ab", buffering=0) as out:
        while True:
            st = os.statvfs(folder)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            try:
                out.write(chunk[: min(len(chunk), max(4096, free - leave))])
            except OSError:
                break
    return filler


def config(daemon: DaemonProcess, **update: object) -> str:
    path = daemon.root / "tailord.toml"
    extra = "".join(f"{k} = {v}\n" for k, v in update.items())
    path.write_text(
        f'[model]\nhead = "linear"\ndim = {DIM}\n'
        f"[update]\n{extra}"
        "[policy]\ncheck_seconds = 1\nretry_seconds = 1\nmax_retry_seconds = 2\n"
    )
    return str(path)


def drop(daemon: DaemonProcess, n: int) -> None:
    rng = np.random.default_rng(0)
    for label, center in (("cat", 2.0), ("dog", -2.0)):
        for i in range(n):
            vec = (np.full(DIM, center) + rng.normal(0, 0.3, DIM)).astype(np.float32)
            daemon.drop(label, f"{i}.npy", npy_bytes(vec))


def queued(daemon: DaemonProcess) -> int:
    with daemon.client() as client:
        return client.status().queued


def test_an_update_failing_on_a_full_disk_leaves_the_daemon_serving(
    daemon: DaemonProcess,
) -> None:
    with small_tmpfs(daemon.data_dir):
        # Epochs enough that the update is still training when the disk fills up.
        daemon.start("--config", config(daemon, epochs=1_000_000), "--quiet-seconds", "3600")
        drop(daemon, 50)
        wait_for(lambda: queued(daemon) == 100, timeout=60)
        with daemon.client() as client:
            update_id = client.update().id
        wait_for((daemon.data_dir / "checkpoints").exists, timeout=120)
        # Every write now needs new blocks: the WAL starts again from nothing.
        with sqlite3.connect(daemon.data_dir / "tailord.db") as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = fill(daemon.data_dir)

        log = daemon.log
        wait_for(lambda: f"update {update_id} failed" in log.read_text(), timeout=120)
        assert daemon.process is not None
        assert daemon.process.poll() is None, log.read_text()
        with daemon.client() as client:  # other clients are served meanwhile
            assert client.version().version == 0
            assert client.status().queued == 100

        filler.unlink()  # the disk has room again: the failure is recorded
        with daemon.client() as client:
            wait_for(lambda: client.update_info(update_id).state == "failed", timeout=60)
            info = client.update_info(update_id)
        assert info.error
        assert "full" in info.error or "No space left" in info.error
        assert queued(daemon) == 100  # nothing lost: still queued for the next update
        assert daemon.process is not None
        assert daemon.process.poll() is None
        daemon.close()


def test_start_up_repair_on_a_full_disk_serves_read_only_and_says_why(
    daemon: DaemonProcess,
) -> None:
    with small_tmpfs(daemon.data_dir):
        settings = config(daemon, epochs=2)
        daemon.start("--config", settings)
        drop(daemon, 20)
        wait_for(lambda: daemon.version() == 1, timeout=180)
        assert daemon.stop() == 0
        # As a crash mid-update leaves them: rows start-up repair must mark interrupted,
        # enough of them that marking them takes more room than the disk will have.
        with sqlite3.connect(daemon.data_dir / "tailord.db") as conn:
            conn.executemany(
                "INSERT INTO updates (reason, state, base_version, started_at, sample_count, "
                "metrics) VALUES ('test', 'running', 1, 0, 0, '{}')",
                [()] * 20_000,
            )
        filler = fill(daemon.data_dir, leave=160 * 1024)

        daemon.start("--config", settings)
        with daemon.client() as client:
            status = client.status()
            assert status.version == 1  # the current version still serves
            assert status.policy.startswith("read-only"), status.policy
            assert "full" in status.policy
            assert str(daemon.data_dir) in status.policy
            assert client.predict([[2.0] * DIM]).version == 1  # predictions served
        assert "read-only: start-up repair failed" in daemon.log.read_text()

        filler.unlink()
        with daemon.client() as client:
            wait_for(lambda: not client.status().policy.startswith("read-only"), timeout=60)
        with sqlite3.connect(daemon.data_dir / "tailord.db") as conn:
            [(left,)] = conn.execute(
                "SELECT count(*) FROM updates WHERE reason = 'test' AND state != 'interrupted'"
            )
        assert left == 0  # the repair ran: every unfinished update recorded as interrupted
        daemon.close()
