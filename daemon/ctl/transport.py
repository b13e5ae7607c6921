"""HTTP/1.1 over a Unix socket, as much of it as tailord's server speaks, on the standard
library's socket alone.

``http.client`` would do, but it imports the email parser and ssl: a third of ``tailorctl
version``'s start-up. tailord answers every request with a ``Content-Length`` body, except
the event stream, whose body ends when the connection does; that is all this reads.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import BinaryIO

MAX_HEAD_LINE = 65536  # a longer status or header line is not from tailord
MAX_HEADERS = 100


class TransportError(OSError):
    """The connection failed, or the answer is not HTTP as tailord speaks it."""


class StaleConnection(TransportError):
    """A kept-alive connection was closed by the daemon before it read the request."""


class Answer:
    """A response's status and head; the body is read from ``stream``.

    A plain class, not a dataclass: ``dataclasses`` would cost every ``tailorctl`` start a few
    milliseconds for one three-field holder (bench/ctl.py).
    """

    __slots__ = ("headers", "status", "stream")

    def __init__(self, status: int, headers: dict[str, str], stream: BinaryIO) -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self.stream = stream

    @property
    def length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None


class Connection:
    """One keep-alive connection; it (re)connects on the first request that needs it."""

    def __init__(self, path: Path, timeout: float | None) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        """Close the connection; a thread blocked reading it sees the end of the stream."""
        if self._sock is not None:
            # Wakes a blocked read with "end of stream" before the file goes away; fails
            # harmlessly when the daemon has already gone.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    def exchange(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        """Send one request and read the answer's head. On a connection the daemon closed
        while it sat idle (its ``idle_timeout``), :class:`StaleConnection` is raised and the
        request may be sent again: nothing of it was read."""
        reused = self._sock is not None
        sock, reader = self._connected()
        lines = [f"{method} {target} HTTP/1.1", "Host: localhost"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            sock.sendall(head + (body or b""))
            status_line = reader.readline(MAX_HEAD_LINE)
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.close()
            raise (StaleConnection if reused else TransportError)(str(exc)) from exc
        if not status_line:
            self.close()
            if reused:
                raise StaleConnection("the daemon closed the kept-alive connection")
            raise TransportError("the daemon closed the connection without answering")
        answer = Answer(_status(status_line), self._headers(reader), reader)
        if "chunked" in answer.headers.get("transfer-encoding", ""):
            self.close()
            raise TransportError("a chunked answer; tailord sends none: is this tailord?")
        return answer

    def read_body(self, answer: Answer) -> bytes:
        """The whole body; the connection stays open for the next request if it may."""
        length = answer.length
        data = answer.stream.read() if length is None else answer.stream.read(length)
        if length is not None and len(data) != length:
            self.close()
            raise TransportError(f"the answer ended after {len(data)} of {length} bytes")
        if length is None or answer.headers.get("connection", "").lower() == "close":
            self.close()
        return data

    def _connected(self) -> tuple[socket.socket, BinaryIO]:
        if self._sock is None or self._reader is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except OSError:
                sock.close()
                raise
            self._sock, self._reader = sock, sock.makefile("rb")
        return self._sock, self._reader

    def _headers(self, reader: BinaryIO) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = reader.readline(MAX_HEAD_LINE)
            if line in (b"\r\n", b"\n"):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                self.close()
                raise TransportError(f"a malformed header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        self.close()
        raise TransportError(f"more than {MAX_HEADERS} header lines, or the head was cut off")


def _status(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise TransportError(f"not an HTTP answer: {line[:80]!r}")
    return int(parts[1])
