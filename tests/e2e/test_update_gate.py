"""Through a running daemon: a sound update is promoted with its curve, a mislabelled one is
rejected by the gate, and both leave their figures in the database and in status."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tailord.daemon.ctl.client import ClientError
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast

CONFIG = """
[model]
head = "linear"

[update]
epochs = 30
learning_rate = 0.05
batch_size = 16

[gate]
holdout = 0.2
max_regression = 0.05

[policy]
min_queued = {min_queued}  # every dropped sample in one update
"""


def last_update(daemon: DaemonProcess) -> dict[str, object]:
    try:
        with daemon.client() as client:
            return dict(client.request("GET", "/v1/status")["last_update"] or {})
    except ClientError:
        # /v1/status can fail for a moment right after start-up (the server answers before
        # the ingestor exists); polls retry.
        return {}


def test_gate_promotes_sound_samples_and_rejects_mislabelled_ones(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    config = short_tmp / "tailord.toml"
    config.write_text(CONFIG.format(min_queued=60))
    rng = np.random.default_rng(0)
    for label, vectors in clusters(rng, 30).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    daemon.start("--config", str(config))  # the start-up scan takes them in one batch
    wait_for(lambda: daemon.version() == 1, timeout=90)
    first = wait_for(
        lambda: last_update(daemon).get("state") == "succeeded" and last_update(daemon)
    )
    assert isinstance(first, dict)
    with daemon.client() as client:
        manifest = client.request("GET", "/v1/version")
    assert manifest["version"] == 1
    daemon.stop()

    # The user files dog pictures under cat.
    config.write_text(CONFIG.format(min_queued=40))
    for i, vector in enumerate(clusters(np.random.default_rng(1), 40)["dog"]):
        daemon.drop("cat", f"wrong-{i}.npy", npy_bytes(vector))
    daemon.start("--config", str(config))
    wait_for(lambda: last_update(daemon).get("state") == "rejected", timeout=90)
    last = last_update(daemon)
    assert daemon.version() == 1  # never became current
    gate = last["gate"]
    assert isinstance(gate, dict)
    assert gate["promote"] is False
    assert "canary accuracy fell" in str(gate["reason"])
    assert gate["holdout_samples"] == 8
    assert str(last["error"]).startswith("gate: ")
    with daemon.client() as client:
        status = client.status()
    assert status.samples["rejected"] == {"cat": 40}
    assert status.queued == 0
    assert not list((daemon.data_dir / "staging").iterdir())
    assert not (daemon.data_dir / "versions" / "2").exists()
    daemon.stop()

    con = sqlite3.connect(daemon.data_dir / "tailord.db")
    try:
        manifest_json = con.execute("SELECT manifest FROM versions WHERE number = 1").fetchone()[0]
        kinds = [k for (k,) in con.execute("SELECT kind FROM update_events WHERE update_id = 1")]
    finally:
        con.close()
    import json

    stored = json.loads(manifest_json)
    curve = stored["metrics"]["curve"]
    assert [p["epoch"] for p in curve] == list(range(1, 31))
    assert curve[-1]["loss"] < curve[0]["loss"]
    assert stored["gate"]["promote"] is True
    assert kinds[0] == "began"
    assert kinds.count("epoch") == 30
