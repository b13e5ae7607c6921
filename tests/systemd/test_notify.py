"""The notify protocol against a real ``$NOTIFY_SOCKET`` listener and the real daemon."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tailord.daemon.config import load_config
from tailord.daemon.notify import Notifier, send
from tailord.daemon.service import Daemon
from tests.conftest import DaemonProcess, npy_bytes, wait_for
from tests.systemd.listener import NotifyListener


@pytest.fixture
def listener(short_tmp: Path) -> Iterator[NotifyListener]:
    got = NotifyListener(short_tmp / "notify")
    yield got
    got.close()


def _supervised(
    monkeypatch: pytest.MonkeyPatch, listener: NotifyListener, watchdog_usec: int = 400_000
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(watchdog_usec))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)


def test_ready_comes_once_the_socket_answers_then_status_watchdog_and_stopping(
    daemon: DaemonProcess, listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    _supervised(monkeypatch, listener)
    daemon.root.joinpath("run").mkdir()
    with daemon.log.open("ab") as log:
        daemon.process = subprocess.Popen(daemon.argv(), stdout=log, stderr=log)
    first = listener.wait_for("READY", timeout=60)
    assert listener.messages == [first], "READY=1 is the first message"
    # At READY the socket already accepts and the current version is loaded.
    assert daemon.version() == 0
    assert first["STATUS"].startswith("serving version 0"), first
    assert first["MAINPID"] == str(daemon.process.pid)

    # Pinged every WATCHDOG_USEC/2 = 0.2 s by the main loop.
    pings = [m for m in listener.drain(1.5) if m.get("WATCHDOG") == "1"]
    assert 3 <= len(pings) <= 12, pings

    # A hung main loop stops the pings; they resume with it.
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        listener.drain(0.3)  # what was in flight
        assert listener.drain(1.0) == []
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    listener.wait_for("WATCHDOG", timeout=10)

    daemon.process.send_signal(signal.SIGTERM)
    assert listener.wait_for("STOPPING", timeout=30)["STOPPING"] == "1"
    assert daemon.process.wait(timeout=30) == 0
    daemon.process = None


def test_sighup_reloads_policy_and_names_the_keys_needing_a_restart(
    daemon: DaemonProcess, listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    _supervised(monkeypatch, listener)
    config = daemon.root / "tailord.toml"
    config.write_text("[policy]\nmin_queued = 1\n")
    daemon.start("--config", str(config), "--quiet-seconds", "3600")
    listener.wait_for("READY")
    assert daemon.process is not None
    daemon.drop("cat", "a.npy", npy_bytes(np.ones(8, dtype=np.float32)))
    listener.wait_for(
        "STATUS", value="serving version 0; waiting: 1 queued, quiet period ends in 3600s"
    )

    # The flag --quiet-seconds stays on top of the file: min_queued is what changes here.
    config.write_text("[policy]\nmin_queued = 2\n[ingest]\nbatch_files = 7\n")
    daemon.process.send_signal(signal.SIGHUP)
    reloading = listener.wait_for("RELOADING")
    assert int(reloading["MONOTONIC_USEC"]) > 0
    listener.wait_for("READY")
    listener.wait_for(
        "STATUS", value="serving version 0; waiting: 1 queued of the 2 needed (min_queued)"
    )
    wait_for(lambda: "apply only on a restart" in daemon.log.read_text(), timeout=10)
    log = daemon.log.read_text()
    assert "applied policy.min_queued" in log
    assert "systemctl restart tailord`): ingest.batch_files" in log

    # A broken file is refused; the daemon keeps running on what it had.
    config.write_text("[policy\n")
    daemon.process.send_signal(signal.SIGHUP)
    listener.wait_for("READY")
    wait_for(lambda: "reload refused" in daemon.log.read_text(), timeout=10)
    assert daemon.version() == 0


def test_a_second_stop_signal_exits_at_once(
    daemon: DaemonProcess, listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    _supervised(monkeypatch, listener)
    daemon.start()
    assert daemon.process is not None
    listener.wait_for("READY")
    daemon.process.send_signal(signal.SIGSTOP)  # so both arrive before it can stop in order
    daemon.process.send_signal(signal.SIGINT)
    daemon.process.send_signal(signal.SIGCONT)
    daemon.process.send_signal(signal.SIGTERM)
    code = daemon.process.wait(timeout=30)
    daemon.process = None
    # Either the second signal forced the exit (which of the two the interpreter runs its
    # handler for second is its choice), or the orderly stop had already finished.
    assert code in (128 + signal.SIGTERM, 128 + signal.SIGINT, 0)
    if code:
        assert "second stop signal" in daemon.log.read_text()


def test_a_dead_thread_stops_the_watchdog_pings(
    short_tmp: Path, listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    _supervised(monkeypatch, listener, watchdog_usec=2)  # due at every call
    config = load_config(
        data_dir=short_tmp / "data", inbox=short_tmp / "inbox", socket=short_tmp / "s.sock"
    )
    daemon = Daemon(config)
    try:
        daemon.startup()
        listener.wait_for("READY", timeout=30)
        daemon._tend()
        assert listener.wait_for("WATCHDOG", timeout=5)["WATCHDOG"] == "1"
        # The watcher's observer thread ends (as if it had crashed): no more pings.
        watcher = daemon._alive["watcher"].__self__  # type: ignore[attr-defined]
        watcher.stop()
        daemon._tend()
        assert listener.drain(0.5) == []
    finally:
        daemon.shutdown()


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_environ()
    assert notifier.notify(READY=1) is False


def test_the_abstract_namespace_and_a_leaked_watchdog_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    name = f"tailord-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert send("@" + name, "READY=1")
        assert sock.recv(100) == b"READY=1"
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    notifier = Notifier.from_environ(env)
    assert notifier.watchdog_period is None, "WATCHDOG_PID names another process"
    assert env == {}, "the variables are removed, so that children do not inherit them"
    ours = Notifier.from_environ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())})
    assert ours.watchdog_period == 0.5
    assert send("/nonexistent/notify", "READY=1") is False
