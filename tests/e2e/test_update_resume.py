"""Through a running daemon: an update stopped by SIGTERM resumes from its checkpoint."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tailord.daemon.ctl.client import ClientError
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast

SLOW_CONFIG = """
[model]
head = "mlp"

[update]
epochs = 12
batch_size = 2
learning_rate = 0.001

[policy]
min_queued = 800  # one update of all samples, so the same set is pending after the restart
"""


def test_update_stopped_with_the_daemon_resumes_from_its_checkpoint(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    config = short_tmp / "tailord.toml"
    config.write_text(SLOW_CONFIG)
    rng = np.random.default_rng(0)
    for label, vectors in clusters(rng, 400).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    daemon.start("--config", str(config))

    def epochs_done() -> int:
        try:
            with daemon.client() as client:
                update = client.request("GET", "/v1/status")["update"]
        except ClientError:  # right after start-up /v1/status may fail for a moment
            return 0
        progress = (update or {}).get("progress") or {}
        epoch = int(progress.get("epoch", 0))
        # A mini-batch event of epoch e means e - 1 epochs are done (and checkpointed).
        return {"epoch": epoch, "batch": epoch - 1}.get(str(progress.get("kind")), 0)

    wait_for(lambda: epochs_done() >= 2, timeout=120, interval=0.05)
    assert daemon.stop() == 0  # SIGTERM mid-update
    saved = json.loads((daemon.data_dir / "checkpoints" / "checkpoint.json").read_text())

    daemon.start("--config", str(config))
    wait_for(lambda: daemon.version() == 1, timeout=180)
    daemon.stop()
    con = sqlite3.connect(daemon.data_dir / "tailord.db")
    try:
        states = dict(con.execute("SELECT id, state FROM updates"))
        began = con.execute(
            "SELECT epoch, batch FROM update_events WHERE update_id = 2 AND kind = 'began'"
        ).fetchone()
        per_epoch = con.execute(
            "SELECT max(batch) FROM update_events WHERE update_id = 2 AND kind = 'epoch'"
        ).fetchone()[0]
        trained = [json.loads(m)["batches"] for (m,) in con.execute("SELECT metrics FROM updates")]
    finally:
        con.close()
    assert states == {1: "interrupted", 2: "succeeded"}
    assert began[0] >= 2  # the second update started where the first stopped:
    assert tuple(began) == (saved["epoch"], saved["batch"])  # at its mini-batch
    assert sum(trained) == 12 * per_epoch  # none trained twice
    assert not (daemon.data_dir / "checkpoints").exists()
