"""What one socket client may hold is bounded: time, connections, unread answers, bodies.

The real server on a real Unix socket, with a small app; the limits set small so that the
tests run in seconds (the daemon's defaults are in docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailord.daemon.http.auth import Authorizer
from tailord.daemon.http.limits import Limits
from tailord.daemon.http.server import UnixHTTPServer
from tests.daemon.test_server import _Gate, _responses


@pytest.fixture
def limited(short_tmp: Path) -> Iterator[tuple[UnixHTTPServer, _Gate]]:
    app = _Gate()
    server = UnixHTTPServer(
        short_tmp / "run" / "s.sock",
        app,
        Authorizer((), ()),
        1 << 20,
        quick=app.quick,
        idle_timeout=0.5,
        limits=Limits(
            max_connections=8,
            header_timeout=0.5,
            body_timeout=0.5,
            max_pending_body_bytes=3 << 20,
            max_unsent_bytes=64 * 1024,
        ),
    )
    server.start()
    yield server, app
    app.release.set()
    server.stop()


def _connect(server: UnixHTTPServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(server.path))
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    """One whole answer (the server closes after it); its status, headers and JSON body.

    Read up to its Content-Length, as an HTTP client does, not to the end of the stream: a
    server that closes while bytes we sent are still unread makes Linux end our side of a
    Unix socket with ECONNRESET instead of EOF, after the answer."""
    data = b""
    while True:
        head, ended, body = data.partition(b"\r\n\r\n")
        if ended:
            lines = head.decode().split("\r\n")
            headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
            if len(body) >= int(headers["content-length"]):
                return int(lines[0].split()[1]), headers, json.loads(body)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the server closed after {data!r}: not a whole answer")
        data += chunk


def test_a_header_sent_a_byte_at_a_time_meets_its_deadline(
    limited: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, _ = limited
    with _connect(server) as sock:
        started = time.monotonic()
        closed = False
        for byte in b"GET /fast HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            try:
                sock.send(bytes([byte]))
            except OSError:  # the server has answered and closed: the point of the test
                closed = True
                break
            time.sleep(0.05)  # each byte well inside the idle timeout: it must not re-arm
            if time.monotonic() - started > 5:
                break
        status, _, body = _answer(sock)
    assert status == 408
    assert "header_timeout" in str(body)
    assert closed or time.monotonic() - started < 5


def test_a_body_held_short_of_its_length_meets_its_deadline(
    limited: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, _ = limited
    with _connect(server) as sock:
        sock.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n123456789")
        started = time.monotonic()
        status, _, body = _answer(sock)
    assert status == 408
    assert "body_timeout" in str(body)
    assert time.monotonic() - started < 5


def test_bodies_still_arriving_share_one_memory_budget(
    limited: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, _ = limited
    size = (1 << 20) - 1  # under max_body_bytes; three fit the 3 MiB budget, a fourth not
    held = [_connect(server) for _ in range(3)]
    try:
        for sock in held:
            sock.sendall(b"POST /a HTTP/1.1\r\nContent-Length: %d\r\n\r\nxx" % size)
        time.sleep(0.1)  # the server has read their headers
        with _connect(server) as fourth:
            fourth.sendall(b"POST /a HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size)
            status, headers, body = _answer(fourth)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert "max_pending_body_bytes" in str(body)
        # The held ones time out and give their share back: a body fits again.
        for sock in held:
            assert _answer(sock)[0] == 408
        with _connect(server) as fifth:
            fifth.sendall(b"POST /a HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size + b"y" * size)
            assert _responses(fifth, 1)[0][0] == 200
    finally:
        for sock in held:
            sock.close()


def test_at_the_connection_cap_idle_connections_make_room(
    limited: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, _ = limited
    idle = [_connect(server) for _ in range(8)]
    try:
        time.sleep(0.1)
        newcomers = []
        for _ in range(3):  # each newcomer (kept open) closes the longest-idle one
            newcomers.append(newcomer := _connect(server))
            newcomer.sendall(b"GET /fast HTTP/1.1\r\n\r\n")
            assert _responses(newcomer, 1) == [(200, {"path": "/fast", "body": ""})]
        idle += newcomers
        closed = 0
        for sock in idle[:3]:  # the oldest
            sock.settimeout(0.01)
            with contextlib.suppress(TimeoutError):
                closed += sock.recv(1) == b""
        assert closed == 3
    finally:
        for sock in idle:
            sock.close()


def test_at_the_connection_cap_with_none_idle_a_newcomer_gets_503(
    limited: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, app = limited
    busy = [_connect(server) for _ in range(8)]
    try:
        for sock in busy:
            sock.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        time.sleep(0.2)
        with _connect(server) as newcomer:
            status, headers, body = _answer(newcomer)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert "max_connections" in str(body)
        app.release.set()
        for sock in busy:
            assert _responses(sock, 1)[0][0] == 200
    finally:
        for sock in busy:
            sock.close()


def test_a_client_that_reads_no_answers_is_no_longer_read(
    limited: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, _ = limited
    request = b"GET /fast HTTP/1.1\r\n\r\n"
    with _connect(server) as sock:
        sock.settimeout(1.0)
        sent = 0
        try:
            while sent < 64 << 20:  # answers to this many would be ~300 MB
                sent += sock.send(request * 4096)
        except TimeoutError:
            pass  # the server stopped reading: the point of the test
        assert sent < 16 << 20, "the server kept reading a client that reads nothing"
        # It answers what it read, in order, once the client reads.
        sock.settimeout(10)
        assert _responses(sock, 3) == [(200, {"path": "/fast", "body": ""})] * 3
