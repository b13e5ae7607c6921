"""The quiet period's end starts the update: not before it, and without waiting for the
periodic check (``check_seconds``, set an hour away here, as is the inbox rescan)."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

from tests.conftest import DaemonProcess, npy_bytes, wait_for

QUIET = 1.0
# The update must start soon after the quiet period: far sooner than the periodic check
# (an hour) that would otherwise be the next wake-up. A loose bound: this is not a timing.
SOON = 10.0
# The daemon times the quiet period on the monotonic clock; the rows compared here are
# wall-clock times, which NTP may slew by up to 0.5 ms a second.
CLOCKS = 0.002


def updates(daemon: DaemonProcess) -> list[tuple[float, float | None]]:
    with sqlite3.connect(daemon.data_dir / "tailord.db", timeout=30) as conn:
        rows = conn.execute("SELECT started_at, finished_at FROM updates ORDER BY id")
        return [(float(start), end) for start, end in rows]


@pytest.mark.slow
def test_the_update_starts_when_the_quiet_period_ends(daemon: DaemonProcess) -> None:
    config = daemon.root / "tailord.toml"
    config.write_text("[policy]\ncheck_seconds = 3600\n[ingest]\nrescan_seconds = 3600\n")
    daemon.start("--config", str(config), "--quiet-seconds", str(QUIET))
    rng = np.random.default_rng(3)
    for i in range(3):  # each commit restarts the quiet period
        daemon.drop("cat", f"{i}.npy", npy_bytes(rng.normal(size=8).astype(np.float32)))
        time.sleep(0.3)
    with daemon.client() as client:
        wait_for(lambda: client.status().queued == 0 and finished(daemon), timeout=120)
        status = client.status()
    committed = status.ingest.last_commit_at
    assert status.ingest.ingested == 3
    assert committed is not None
    # The last commit came before the last update (normally the only one) started.
    started = updates(daemon)[-1][0]
    assert started >= committed + QUIET - CLOCKS, "the update started inside the quiet period"
    assert started - (committed + QUIET) < SOON, "the update waited for another wake-up"


def finished(daemon: DaemonProcess) -> bool:
    rows = updates(daemon)
    return bool(rows) and all(end is not None for _, end in rows)
