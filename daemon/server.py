"""HTTP/1.1 over a Unix socket, on the standard library's threading server.

Why this server: the API is small, local and mostly tiny JSON; measured here the standard
library's threading server on AF_UNIX answers ~10k requests/s with a sub-millisecond p99,
and an async server was no faster. One thread per connection also means a slow prediction
never blocks ``/v1/version``. Each connection's peer uid is checked (SO_PEERCRED) before its
request is served.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import json
import logging
import os
import pwd
import socket
import socketserver
import stat
import struct
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tailord.daemon.errors import AlreadyRunning, ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    peer: Peer


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # A body of unknown length (server-sent events): written as it comes, then the
    # connection is closed, which is what ends the body for the client.
    stream: Iterator[bytes] | None = None


def json_response(status: int, payload: object) -> Response:
    return Response(status, json.dumps(payload).encode() + b"\n")


def error_response(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})


App = Callable[[Request], Response]


class Authorizer:
    """Whether a peer may use the API: the daemon's own uid, root, and the allow-lists."""

    def __init__(self, users: Iterable[str], groups: Iterable[str]) -> None:
        self.uids = {0, os.getuid(), *(_resolve(u, pwd.getpwnam, "pw_uid") for u in users)}
        self.gids = {_resolve(g, grp.getgrnam, "gr_gid") for g in groups}

    def allows(self, peer: Peer) -> bool:
        if peer.uid in self.uids:
            return True
        return bool(self.gids) and bool(self.gids & _peer_groups(peer))


def _resolve(name: str, lookup: Callable[[str], object], attr: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return int(getattr(lookup(name), attr))
    except KeyError as exc:
        raise ConfigError(f"[api] names {name!r}, which this system does not know") from exc


def _peer_groups(peer: Peer) -> set[int]:
    groups = {peer.gid}
    # Supplementary groups are not in SO_PEERCRED; the peer's /proc entry has them.
    with contextlib.suppress(OSError), open(f"/proc/{peer.pid}/status") as status:
        for line in status:
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    return groups


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


_date_cache: tuple[int, str] = (0, "")  # (Unix second, its Date header); swapped whole


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UnixHTTPServer
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's, set by send_response

    def setup(self) -> None:
        super().setup()
        self.peer = peer_of(self.request)
        self.allowed = self.server.authorizer.allows(self.peer)  # fixed for the connection

    def date_time_string(self, timestamp: float | None = None) -> str:
        # Formatting the Date header is a visible share of a tiny request: once a second.
        global _date_cache  # noqa: PLW0603 (one reference swapped: no lock needed)
        now = int(time.time()) if timestamp is None else int(timestamp)
        second, text = _date_cache
        if second != now:
            text = super().date_time_string(now)
            _date_cache = (now, text)
        return text

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if not self.allowed:
            response = error_response(
                403,
                "forbidden",
                f"uid {self.peer.uid} may not use tailord; add the user to [api] "
                "allowed_users (or a group of theirs to allowed_groups) and restart",
            )
            self.close_connection = True
        else:
            response = self._read_and_call(split.path, parse_qs(split.query), headers)
        length = len(response.body)  # HEAD announces the length GET would send
        if self.command == "HEAD":
            response = Response(response.status, b"", response.content_type, response.headers)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if response.stream is None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        for key, value in response.headers.items():
            self.send_header(key, value)
        # Headers and body in one write: one system call, and one packet for the client.
        self._headers_buffer.append(b"\r\n" + response.body)
        self.flush_headers()
        if response.stream is not None:
            self._write_stream(response.stream)

    def _write_stream(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass  # the client went away: the normal end of a stream
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # runs the generator's cleanup (unsubscribes) at once

    # Error codes for what BaseHTTPRequestHandler refuses before a route is looked up.
    _PARSE_ERRORS: typing.ClassVar[dict[int, tuple[int, str, str]]] = {
        HTTPStatus.NOT_IMPLEMENTED: (
            405,
            "method_not_allowed",
            "tailord answers GET, HEAD, POST and DELETE; see /v1/openapi.json",
        ),
        HTTPStatus.REQUEST_URI_TOO_LONG: (
            414,
            "uri_too_long",
            "the request line is too long; send parameters in the body",
        ),
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: (
            431,
            "headers_too_large",
            "the request headers are too large or too many; send fewer",
        ),
        HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: (
            505,
            "http_version_not_supported",
            "speak HTTP/1.0 or HTTP/1.1 to tailord",
        ),
    }

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer what the request parser refused as JSON, never as an HTML page."""
        status, error_code, text = self._PARSE_ERRORS.get(
            code,
            (
                400,
                "bad_request",
                f"tailord could not parse the request ({message or HTTPStatus(code).phrase}); "
                "send HTTP/1.1, e.g. `curl --unix-socket SOCK http://localhost/v1/version`",
            ),
        )
        body = json.dumps({"error": {"code": error_code, "message": text}}).encode() + b"\n"
        self.close_connection = True
        # The parser leaves 0.9 when it gave up early, which would mean "no status line".
        if self.request_version == "HTTP/0.9" or not self.request_version:
            self.request_version = "HTTP/1.1"
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            if status == 405:
                self.send_header("Allow", "GET, HEAD, POST, DELETE")
            self.end_headers()
            if self.command != "HEAD" and status >= 200:
                self.wfile.write(body)
        except OSError:
            pass

    def _read_and_call(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> Response:
        length_text = headers.get("content-length", "0")
        if "transfer-encoding" in headers:
            self.close_connection = True
            return error_response(
                411, "length_required", "send the body with a Content-Length, not chunked"
            )
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length_text)
        except ValueError:
            self.close_connection = True
            return error_response(400, "bad_request", "Content-Length must be a whole number")
        if length > self.server.max_body_bytes:
            self.close_connection = True  # the unread body would corrupt the next request
            return error_response(
                413,
                "body_too_large",
                f"the body is {length} bytes; the limit is {self.server.max_body_bytes} "
                "([api] max_body_bytes); send fewer inputs per request",
            )
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, path, query, headers, body, self.peer)
        try:
            return self.server.app(request)
        except Exception:
            logger.exception("error while serving %s %s", self.command, path)
            return error_response(
                500, "internal", "tailord failed to answer; its log (journalctl) says why"
            )

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("uid %d: " + format, self.peer.uid, *args)


GIL_SWITCH_SECONDS = 0.0005
SD_LISTEN_FDS_START = 3  # systemd passes listening sockets from fd 3 on (sd_listen_fds(3))


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd passed us (socket activation), if any.

    It is ours only when ``LISTEN_PID`` names this process: the variables may have leaked
    from a parent. They are removed either way so that child processes do not act on them.
    """
    pid = os.environ.pop("LISTEN_PID", None)
    fds = os.environ.pop("LISTEN_FDS", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if pid is None or fds is None:
        return None
    if not pid.isdigit() or int(pid) != os.getpid():
        logger.warning("LISTEN_PID=%s is not this process; binding the socket itself", pid)
        return None
    if not fds.isdigit() or int(fds) < 1:
        return None
    if int(fds) > 1:
        logger.warning("systemd passed %s sockets; tailord uses only the first", fds)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ConfigError(
            "the socket systemd passed is not a Unix stream socket; "
            "use ListenStream=/run/tailord/tailord.sock in tailord.socket"
        )
    os.set_inheritable(sock.fileno(), False)
    return sock


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Threading HTTP server on a Unix socket with mode 0660 in a private folder.

    With ``listener`` (a socket inherited from systemd) it serves that socket as is: systemd
    created the file, set its mode and owns it, so it is neither bound nor removed here.
    """

    daemon_threads = True
    block_on_close = False
    # listen() backlog: socketserver's default of 5 makes a burst of clients connecting at
    # once fail with EAGAIN (Unix sockets refuse instead of waiting); the kernel caps it.
    request_queue_size = 128

    def __init__(
        self,
        path: Path,
        app: App,
        authorizer: Authorizer,
        max_body_bytes: int,
        listener: socket.socket | None = None,
    ) -> None:
        self.app = app
        self.authorizer = authorizer
        self.max_body_bytes = max_body_bytes
        self.path = path
        self.owns_path = listener is None
        self._thread: threading.Thread | None = None
        if listener is not None:
            super().__init__(str(path), _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = listener
            bound = listener.getsockname()
            if isinstance(bound, str) and bound:
                self.path = Path(bound)
            self.server_address = str(self.path)
            return
        _prepare_socket_path(path)
        super().__init__(str(path), _Handler, bind_and_activate=False)
        old_umask = os.umask(0o117)  # no window in which the socket is world-accessible
        try:
            self.server_bind()
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        self.server_activate()

    def start(self) -> None:
        # A handler thread that wakes for a request waits for the GIL while another thread
        # computes (the main thread reading an update's progress messages, say), up to the
        # switch interval: at the default 5 ms, p99 while an update trained was 16x idle;
        # at 0.5 ms it is about 1.4x (bench/api.py). Process-wide, and meant to be.
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="tailord-api"
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the listening socket and remove its file (if ours)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()
        if self.owns_path:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def _prepare_socket_path(path: Path) -> None:
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
    mode = folder.stat().st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise ConfigError(
            f"{folder} is world-writable; put the socket in a private folder (--socket)"
        )
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT):
                raise
            path.unlink()  # a stale socket left by a crash
        else:
            raise AlreadyRunning(
                f"another tailord is serving on {path}; stop it or pass another --socket"
            )
        finally:
            probe.close()
