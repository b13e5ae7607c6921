"""A dropped sample becomes a new model version, answered on the socket (the whole path)."""

from __future__ import annotations

import io
import json
import pickle
import signal
import sqlite3
import subprocess

import numpy as np
import pytest

from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for


@pytest.mark.parametrize("head", ["knn", pytest.param("linear", marks=pytest.mark.slow)])
def test_samples_become_a_version_that_predicts(daemon: DaemonProcess, head: str) -> None:
    daemon.start("--head", head)
    assert daemon.version() == 0

    rng = np.random.default_rng(0)
    for label, vectors in clusters(rng, 12).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))

    wait_for(lambda: daemon.version() >= 1, timeout=90)
    wait_for(lambda: _learned(daemon) == 24, timeout=90)
    unseen = clusters(np.random.default_rng(1), 5)
    with daemon.client() as client:
        answer = client.predict([v.tolist() for v in unseen["cat"] + unseen["dog"]])
    assert answer.version >= 1
    assert [p.label for p in answer.predictions] == ["cat"] * 5 + ["dog"] * 5
    assert all(0.0 <= p.score <= 1.0 for p in answer.predictions)  # type: ignore[operator]
    # Acknowledged means removed from the inbox.
    assert not list(daemon.inbox.glob("*/*.npy"))


@pytest.mark.slow
def test_bad_files_are_rejected_and_the_daemon_keeps_ingesting(daemon: DaemonProcess) -> None:
    daemon.start("--quiet-seconds", "3600")  # no update: this test is about ingest
    daemon.drop("cat", "pickled.npy", _pickled_npy())
    daemon.drop("cat", "words.json", json.dumps({"not": "numbers"}).encode())
    daemon.drop("cat", "empty.npy", b"")
    rejected = daemon.inbox / ".rejected"
    for name in ("pickled.npy", "words.json", "empty.npy"):
        reason = rejected / f"{name}.reason"
        wait_for(reason.exists, timeout=30)
        text = reason.read_text()
        assert text.count("\n") == 1, text
        assert len(text) > 20, text
        assert (rejected / name).exists()

    good = np.ones(8, dtype=np.float32)
    daemon.drop("cat", "good.npy", npy_bytes(good))
    wait_for(lambda: _queued(daemon) == 1, timeout=30)
    assert daemon.process is not None
    assert daemon.process.poll() is None


@pytest.mark.slow
def test_restart_keeps_samples_and_version(daemon: DaemonProcess) -> None:
    daemon.start()
    rng = np.random.default_rng(2)
    for label, vectors in clusters(rng, 6).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    wait_for(lambda: _learned(daemon) == 12 and _idle(daemon), timeout=90)
    version = daemon.version()
    assert daemon.stop() == 0

    extra = np.full(8, 3.0, dtype=np.float32)
    daemon.start("--quiet-seconds", "3600")
    assert daemon.version() == version
    daemon.drop("cat", "late.npy", npy_bytes(extra))
    wait_for(lambda: _queued(daemon) == 1, timeout=30)
    daemon.stop()

    with sqlite3.connect(daemon.data_dir / "tailord.db") as conn:
        rows = conn.execute("SELECT state, count(*) FROM samples GROUP BY state").fetchall()
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    assert dict(rows) == {"learned": 12, "queued": 1}
    assert integrity == "ok"


@pytest.mark.slow
def test_sigint_stops_cleanly_and_removes_the_socket(daemon: DaemonProcess) -> None:
    daemon.start()
    assert daemon.stop(signal.SIGINT) == 0
    assert not daemon.socket.exists()


def test_curl_reads_the_version(daemon: DaemonProcess) -> None:
    daemon.start()
    out = subprocess.run(
        ["curl", "-s", "--unix-socket", str(daemon.socket), "http://localhost/v1/version"],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert json.loads(out.stdout)["version"] == 0


def _pickled_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    data = buffer.getvalue()
    assert pickle.PROTO in data or b"\x80" in data  # really holds a pickle
    return data


def _queued(daemon: DaemonProcess) -> int:
    with daemon.client() as client:
        return client.status().queued


def _learned(daemon: DaemonProcess) -> int:
    with daemon.client() as client:
        return sum(client.status().samples.get("learned", {}).values())


def _idle(daemon: DaemonProcess) -> bool:
    # Samples are marked learned in the commit just before the new version is swapped in:
    # "idle" is the moment both have happened.
    with daemon.client() as client:
        return client.status().state == "idle"
