"""Hostile socket clients against a real daemon: waiters, idle crowds, clients that never read.

Each test holds many real connections to a real ``tailord serve`` and checks that the other
clients are still served promptly and that what the crowd holds is bounded and given back.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # daemons, long updates, thousands of sockets

LONG_UPDATE = """
[model]
head = "mlp"

[update]
epochs = 500
batch_size = 2
"""
PROMPT = 5.0  # seconds: generous on a loaded CI machine; a blocked API takes 30 (the timeout)


def _proc(daemon: DaemonProcess, name: str) -> str:
    assert daemon.process is not None
    return Path(f"/proc/{daemon.process.pid}/{name}").read_text()


def _threads(daemon: DaemonProcess) -> int:
    line = next(x for x in _proc(daemon, "status").splitlines() if x.startswith("Threads:"))
    return int(line.split()[1])


def _rss_mib(daemon: DaemonProcess) -> float:
    line = next(x for x in _proc(daemon, "status").splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _fds(daemon: DaemonProcess) -> int:
    assert daemon.process is not None
    return len(os.listdir(f"/proc/{daemon.process.pid}/fd"))


def _sockets(daemon: DaemonProcess) -> int:
    """The daemon's open sockets (its listener, its connections)."""
    assert daemon.process is not None
    folder = Path(f"/proc/{daemon.process.pid}/fd")
    count = 0
    for fd in os.listdir(folder):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            count += os.readlink(folder / fd).startswith("socket:")
    return count


def _ask(daemon: DaemonProcess, request: bytes) -> tuple[int, float]:
    """One request on a new connection: its status and how long the answer took."""
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(daemon.socket))
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, "the daemon closed the connection without an answer"
            head += chunk
    return int(head.split()[1]), time.monotonic() - started


def _others_are_served(daemon: DaemonProcess) -> None:
    for request in (
        b"GET /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /v1/samples HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"POST /v1/predict HTTP/1.1\r\nContent-Length: 19\r\nConnection: close\r\n\r\n"
        b'{"inputs": [[1,2]]}',
    ):
        status, seconds = _ask(daemon, request)
        assert status < 500, request
        assert seconds < PROMPT, (request, seconds)


def test_300_waiters_hold_no_thread_and_their_going_frees_everything(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    config = short_tmp / "tailord.toml"
    config.write_text(LONG_UPDATE)
    for label, vectors in clusters(np.random.default_rng(0), 300, dim=2).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    daemon.start("--config", str(config))
    with daemon.client() as client:
        wait_for(lambda: client.status().queued == 600 or client.status().update)
        update = client.update()
    time.sleep(1.0)
    threads, sockets = _threads(daemon), _sockets(daemon)
    waiters = []
    try:
        for i in range(300):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(daemon.socket))
            if i % 2:
                sock.sendall(b"POST /v1/update?wait=true HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            else:
                path = f"/v1/updates/{update.id}?wait=true"
                sock.sendall(f"GET {path} HTTP/1.1\r\n\r\n".encode())
            waiters.append(sock)
        time.sleep(4.0)  # every request has been read and is waiting
        _others_are_served(daemon)
        # A burst of requests starts some pool threads (each request is read on one, briefly:
        # up to ~120 on a loaded machine); 300 waiters holding threads would need 300, and the
        # pool's cap of 256 would stall the rest (as old main did).
        assert _threads(daemon) < threads + 200, "waiters hold threads"
        with daemon.client() as client:
            assert client.update_info(update.id).state == "running"
    finally:
        for sock in waiters:
            sock.close()
    # The waiters' going frees their connections (and with them their waits); the pool's
    # new threads keep a database connection each (SQLite files, not sockets).
    wait_for(lambda: _sockets(daemon) <= sockets, timeout=10)
    _others_are_served(daemon)
    # A waiter that stays gets its answer at its timeout: the update, still running.
    status, seconds = _ask(
        daemon, f"GET /v1/updates/{update.id}?wait=true&timeout=1 HTTP/1.1\r\n\r\n".encode()
    )
    assert (status, seconds > 0.9) == (200, True)


def _start_limited(daemon: DaemonProcess, soft: int, hard: int) -> None:
    """``tailord serve`` with RLIMIT_NOFILE set as ``prlimit --nofile=soft:hard`` would."""
    with daemon.log.open("ab") as log:
        daemon.process = subprocess.Popen(
            ["prlimit", f"--nofile={soft}:{hard}", "--", *daemon.argv()],
            stdout=log,
            stderr=log,
            cwd=daemon.root,
        )
    wait_for(daemon._answers, timeout=60)


def _nofile(daemon: DaemonProcess) -> tuple[int, int]:
    line = next(x for x in _proc(daemon, "limits").splitlines() if "open files" in x)
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(daemon: DaemonProcess) -> None:
    _start_limited(daemon, 256, 4096)
    assert _nofile(daemon) == (4096, 4096)


def test_2000_idle_connections_lock_no_one_out(daemon: DaemonProcess) -> None:
    own = resource.getrlimit(resource.RLIMIT_NOFILE)
    if own[1] != resource.RLIM_INFINITY and own[1] < 2200:
        pytest.skip("this test needs 2,200 descriptors of its own (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(own[0], 2200), own[1]))
    _start_limited(daemon, 1024, 1024)  # the default limit, as the issue found it
    idle = []
    try:
        for _ in range(2000):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(daemon.socket))
            idle.append(sock)
        time.sleep(1.0)
        _others_are_served(daemon)
        daemon.drop("a", "x.npy", npy_bytes(np.ones(2, np.float32)))
        with daemon.client() as client:  # the inbox scan opened its file: no EMFILE
            wait_for(lambda: client.status().queued == 1, timeout=30)
        assert _fds(daemon) < 1024
        assert "EMFILE" not in daemon.log.read_text()
        assert "Too many open files" not in daemon.log.read_text()
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, own)


def test_a_client_that_reads_no_answers_cannot_take_the_memory(daemon: DaemonProcess) -> None:
    daemon.start()
    before = _rss_mib(daemon)
    request = b"GET /v1/version HTTP/1.1\r\n\r\n" * 4096
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(daemon.socket))
        sock.settimeout(2.0)
        sent = 0
        try:
            while sent < 48 << 20:  # ~1.8 million requests: ~600 MB of answers
                sent += sock.send(request)
        except TimeoutError:
            pass  # the daemon stopped reading: the point of the test
        time.sleep(1.0)
        grown = _rss_mib(daemon) - before
        _others_are_served(daemon)
    assert sent < 8 << 20, f"the daemon read {sent} bytes of requests whose answers sat unread"
    assert grown < 32, f"RSS grew by {grown:.0f} MiB"
