"""Keep-alive connections left silent are closed; tailord's client reconnects by itself."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailord.daemon.ctl.client import Client
from tailord.daemon.http.auth import Authorizer
from tailord.daemon.http.server import UnixHTTPServer
from tests.daemon.test_server import _Gate, _responses

IDLE = 0.3


@pytest.fixture
def idle_server(short_tmp: Path) -> Iterator[tuple[UnixHTTPServer, _Gate]]:
    app = _Gate()
    server = UnixHTTPServer(
        short_tmp / "run" / "s.sock",
        app,
        Authorizer((), ()),
        1024,
        quick=app.quick,
        idle_timeout=IDLE,
    )
    server.start()
    yield server, app
    app.release.set()
    server.stop()


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes ``sock`` (it sends nothing more meanwhile)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    assert sock.recv(1) == b"", "the server sent data instead of closing"
    return time.monotonic() - started


def test_a_silent_connection_is_closed_after_the_idle_timeout(
    idle_server: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, _ = idle_server
    with socket.socket(socket.AF_UNIX) as never_spoke, socket.socket(socket.AF_UNIX) as spoke:
        never_spoke.connect(str(server.path))
        spoke.connect(str(server.path))
        spoke.settimeout(10)
        spoke.sendall(b"GET /fast HTTP/1.1\r\n\r\n")
        assert _responses(spoke, 1) == [(200, {"path": "/fast", "body": ""})]
        assert IDLE * 0.5 < _closed_within(spoke, 10) < 5
        assert _closed_within(never_spoke, 10) < 5


def test_a_request_being_answered_is_not_idle(idle_server: tuple[UnixHTTPServer, _Gate]) -> None:
    server, app = idle_server
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(server.path))
        sock.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        time.sleep(IDLE * 4)  # the route blocks far longer than the idle timeout
        app.release.set()
        assert _responses(sock, 1) == [(200, {"path": "/slow", "body": ""})]
        # Answered: from now on it is idle again.
        assert _closed_within(sock, 10) < 5


def test_the_client_sends_again_on_a_connection_closed_while_idle(
    idle_server: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, _ = idle_server
    with Client(server.path, timeout=10) as client:
        assert client.request("POST", "/first", b"1") == {"path": "/first", "body": "1"}
        time.sleep(IDLE * 4)  # the daemon has closed the keep-alive connection by now
        assert client.request("POST", "/again", b"2") == {"path": "/again", "body": "2"}
