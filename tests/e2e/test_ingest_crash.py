"""Killing the daemon in the middle of a big .jsonl batch loses nothing and doubles nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3

import pytest

from tests.conftest import DaemonProcess, wait_for

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast

LINES = 20_000


def count(daemon: DaemonProcess) -> int:
    db = daemon.data_dir / "tailord.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def test_sigkill_mid_batch_then_restart_ingests_every_line_once(daemon: DaemonProcess) -> None:
    config = daemon.root / "tailord.toml"
    config.write_text("[ingest]\nbatch_lines = 500\n")
    daemon.start("--quiet-seconds", "3600", "--config", str(config))
    daemon.inbox.mkdir(parents=True, exist_ok=True)
    tmp = daemon.inbox / ".batch.jsonl"
    with tmp.open("w") as out:
        for i in range(LINES):
            out.write(json.dumps({"label": f"l{i % 3}", "vector": [i, 1.0, 2.0, 3.0]}) + "\n")
    os.rename(tmp, daemon.inbox / "batch.jsonl")
    wait_for(lambda: count(daemon) > 0, timeout=60, interval=0.01)
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    partial = count(daemon)
    assert (daemon.inbox / "batch.jsonl").exists()  # not acknowledged: still in the inbox

    daemon.start("--quiet-seconds", "3600", "--config", str(config))
    wait_for(lambda: not (daemon.inbox / "batch.jsonl").exists(), timeout=120)
    assert count(daemon) == LINES
    with sqlite3.connect(daemon.data_dir / "tailord.db") as conn:
        [(distinct,)] = conn.execute("SELECT count(DISTINCT source) FROM samples").fetchall()
        [(integrity,)] = conn.execute("PRAGMA integrity_check").fetchall()
    assert distinct == LINES
    assert integrity == "ok"
    with daemon.client() as client:
        status = client.status()
    # The second run found the committed lines already there: duplicates, not new samples.
    assert status.ingest.ingested == LINES - partial
    assert status.ingest.duplicates == partial
    assert not (daemon.inbox / ".rejected").exists()
