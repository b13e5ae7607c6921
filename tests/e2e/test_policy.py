"""Through running daemons: the machine's conditions hold automatic updates back, a busy
machine expires a running one, and the next resumes it to the same weights."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from tailord.daemon.conditions.cpu import CpuMeter
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # daemons and updates: see scripts/test.sh --fast

EXPIRY_BOUND_SECONDS = 20.0  # hogs start -> update expired: idle_seconds 2 + ticks + load


def _status(daemon: DaemonProcess) -> dict[str, Any]:
    with daemon.client() as client:
        answer: dict[str, Any] = client.request("GET", "/v1/status")
        return answer


def test_a_window_that_excludes_now_holds_automatic_updates_not_manual_ones(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    opens = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    closes = opens + timedelta(hours=1)
    config = short_tmp / "tailord.toml"
    config.write_text(f'[policy]\nwindows = ["{opens:%H:%M}-{closes:%H:%M}"]\ntimezone = "UTC"\n')
    rng = np.random.default_rng(1)
    for label, vectors in clusters(rng, 3).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    daemon.start("--config", str(config))
    wait_for(lambda: _status(daemon)["queued"] == 6, timeout=60)
    time.sleep(2.0)  # the quiet period (0.5 s) is long over: only the window holds it back
    status = _status(daemon)
    assert daemon.version() == 0
    assert status["policy"] == f"waiting: window opens at {opens:%H:%M}"
    window = next(c for c in status["conditions"] if c["name"] == "window")
    assert window == {"name": "window", "ok": False, "detail": f"window opens at {opens:%H:%M}"}
    assert {c["name"] for c in status["conditions"]} == {"backoff", "min_queued", "quiet", "window"}
    with daemon.client() as client:
        deferred = client.request("POST", "/v1/update?defer=true", body=b"{}")
    assert deferred["state"] == "pending"
    time.sleep(1.5)  # a deferred request waits for the window too
    with daemon.client() as client:
        assert client.request("GET", f"/v1/updates/{deferred['id']}")["state"] == "pending"
        # Asked for now, it runs at once (the pending request is the one that runs).
        done = client.request("POST", "/v1/update?wait=true&timeout=120", body=b"{}")
    assert (done["id"], done["state"]) == (deferred["id"], "succeeded")
    assert daemon.version() == 1


def _workers(pid: int) -> list[int]:
    """The update worker processes of daemon ``pid`` (not multiprocessing's resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in found if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_a_worker_that_sends_no_progress_is_stopped_and_its_update_fails_stalled(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    config = short_tmp / "tailord.toml"
    config.write_text(SLOW_CONFIG + "[policy]\nmin_queued = 200\nstall_seconds = 20.0\n")
    rng = np.random.default_rng(2)
    for label, vectors in clusters(rng, 100).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    daemon.start("--config", str(config))
    wait_for(lambda: (_status(daemon)["update"] or {}).get("progress"), timeout=120)
    assert daemon.process is not None
    workers = _workers(daemon.process.pid)
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)  # frozen: alive, silent
    failed = wait_for(
        lambda: (last := _status(daemon)["last_update"]) and last["state"] == "failed" and last,
        timeout=60,
    )
    assert isinstance(failed, dict)
    assert failed["error"].startswith("stalled: the worker sent no progress for ")

    def backoff() -> dict[str, Any]:
        return next(c for c in _status(daemon)["conditions"] if c["name"] == "backoff")

    # A stalled update is a failure: the back-off applies (once the main loop decides again).
    wait_for(lambda: not backoff()["ok"], timeout=10)
    assert "1 update(s) failed in a row" in backoff()["detail"]

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
        except (FileNotFoundError, ProcessLookupError):
            return True

    wait_for(lambda: all(gone(pid) for pid in workers), timeout=10)


SLOW_CONFIG = """
[model]
head = "mlp"

[update]
epochs = 12
batch_size = 2
learning_rate = 0.001
device = "cpu"

[worker]
threads = 1
"""

EXPIRE_POLICY = """
[policy]
min_queued = 800
idle = true
idle_seconds = 2.0
sample_seconds = 0.5
max_load = 0.9  # the hogs take every core; other tests on a shared machine seldom do
max_cpu_pressure = 100.0  # the shared machine's pressure is not this test's to control
"""


@pytest.fixture
def hogs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for hog in started:
        hog.kill()
        hog.wait()


def _start_hogs(into: list[subprocess.Popen[bytes]]) -> None:
    for _ in range(2 * (os.cpu_count() or 1)):
        into.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))


def _others_load(seconds: float) -> float:
    meter = CpuMeter(seconds, 100.0, 1.0)
    meter.sample()
    time.sleep(seconds)
    meter.sample()
    return float(meter.check(worker_running=True).detail.split()[1])


def _rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(data_dir / "tailord.db")
    try:
        return list(con.execute(sql))
    finally:
        con.close()


def _weights(data_dir: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load(
        (data_dir / "versions" / "1" / "weights.safetensors").read_bytes()
    )


def test_a_busy_machine_expires_the_update_and_the_next_resumes_it(
    daemon: DaemonProcess, short_tmp: Path, hogs: list[subprocess.Popen[bytes]]
) -> None:
    if _others_load(2.0) > 0.5:
        pytest.skip("the machine is busy with other work: an idle baseline is needed")
    hold = short_tmp / "hold.toml"  # ingest everything, start no update: a window not now
    opens = datetime.now(UTC) + timedelta(hours=2)
    hold.write_text(
        SLOW_CONFIG + f'[policy]\nwindows = ["{opens:%H}:00-{opens:%H}:30"]\ntimezone = "UTC"\n'
    )
    rng = np.random.default_rng(0)
    for label, vectors in clusters(rng, 400).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    daemon.start("--config", str(hold))
    wait_for(lambda: _status(daemon)["queued"] == 800, timeout=120)
    assert daemon.stop() == 0
    reference = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
    try:
        shutil.copytree(daemon.data_dir, reference / "data", symlinks=True)
        _expire_and_resume(daemon, short_tmp, hogs)
        # The same queue, one uninterrupted update with the same seed: the same weights.
        other = DaemonProcess(reference)
        plain = reference / "tailord.toml"
        plain.write_text(SLOW_CONFIG + "[policy]\nmin_queued = 800\n")
        try:
            other.start("--config", str(plain))
            wait_for(lambda: other.version() == 1, timeout=300)
        finally:
            other.close()
        ours, theirs = _weights(daemon.data_dir), _weights(other.data_dir)
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert torch.equal(ours[name], theirs[name]), name  # bit-equal on the CPU
    finally:
        shutil.rmtree(reference, ignore_errors=True)


def _expire_and_resume(
    daemon: DaemonProcess, short_tmp: Path, hogs: list[subprocess.Popen[bytes]]
) -> None:
    config = short_tmp / "expire.toml"
    config.write_text(SLOW_CONFIG + EXPIRE_POLICY)
    daemon.start("--config", str(config))

    def epochs_done() -> int:
        update = _status(daemon)["update"] or {}
        progress = update.get("progress") or {}
        epoch = int(progress.get("epoch", 0))
        return {"epoch": epoch, "batch": epoch - 1}.get(str(progress.get("kind")), 0)

    # Alone on an idle machine, the update runs on: its own CPU use never counts.
    wait_for(lambda: epochs_done() >= 2, timeout=180, interval=0.05)
    assert _status(daemon)["last_update"]["state"] == "running"  # not expired so far
    started = time.monotonic()
    _start_hogs(hogs)
    first = wait_for(
        lambda: (last := _status(daemon)["last_update"]) and last["state"] == "expired" and last,
        timeout=EXPIRY_BOUND_SECONDS,
        interval=0.1,
    )
    took = time.monotonic() - started
    assert isinstance(first, dict)
    assert first["error"].startswith("expired at epoch ")
    assert "machine busy (load " in first["error"]
    assert first["error"].endswith("resumes when idle")
    # The row ends a moment before the main loop decides again: the sentence follows then.
    status = wait_for(
        lambda: (now := _status(daemon))["policy"].startswith(first["error"]) and now,
        timeout=10,
        interval=0.1,
    )
    assert isinstance(status, dict)
    idle = next(c for c in status["conditions"] if c["name"] == "idle")
    assert not idle["ok"], idle
    for hog in hogs:
        hog.kill()
    wait_for(lambda: daemon.version() == 1, timeout=300)
    daemon.stop()
    updates = _rows(daemon.data_dir, "SELECT id, state, resumed_from FROM updates ORDER BY id")
    # Usually one expired and one resumed; a hog still dying may expire a resumed one too.
    assert updates[-1][1] == "succeeded"
    assert [u[1] for u in updates[:-1]] == ["expired"] * (len(updates) - 1)
    assert [u[2] for u in updates] == [None] + [u[0] for u in updates[:-1]]
    for (before, _, _), (after, _, _) in pairwise(updates):
        done = _rows(
            daemon.data_dir,
            f"SELECT max(epoch) FROM update_events WHERE update_id = {before} AND kind = 'epoch'",
        )[0][0]
        began = _rows(
            daemon.data_dir,
            f"SELECT epoch FROM update_events WHERE update_id = {after} AND kind = 'began'",
        )[0][0]
        # Epochs done are not redone (12 trained in all, not more). The checkpoint is written
        # just before its epoch's event is sent: a stop between the two finds one more done.
        assert began in (done, done + 1)
    last = _rows(
        daemon.data_dir,
        f"SELECT max(epoch) FROM update_events WHERE update_id = {updates[-1][0]} "
        "AND kind = 'epoch'",
    )[0][0]
    assert last == 12
    print(f"hogs started -> update expired: {took:.1f}s (bound {EXPIRY_BOUND_SECONDS:g}s)")
