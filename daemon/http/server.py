"""The socket API's server: HTTP/1.1 on a Unix socket, on an asyncio event loop.

Why this server: the API is small, local and mostly tiny JSON, and a client may hold a
connection open (keep-alive, server-sent events). One event loop thread (uvloop: libuv's
loop, as uvicorn runs on) with httptools (llhttp, uvicorn's parser) for the wire answers
about five times as many requests a second under 16 concurrent clients as the standard
library's thread-per-connection server did, whose threads spent their time handing the
interpreter lock to each other (bench/api.py; docs/api.md). Routes that may block (the
database, a prediction, an update waited for) run on worker threads, so a slow one never
holds up ``/v1/version``. Each connection's peer uid is checked (SO_PEERCRED) before any
request on it is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import socket
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import uvloop

from tailord.daemon.errors import AlreadyRunning, ConfigError
from tailord.daemon.http.auth import Authorizer
from tailord.daemon.http.protocol import Connection
from tailord.daemon.http.wire import App, Request

logger = logging.getLogger(__name__)

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


class UnixHTTPServer:
    """HTTP on a Unix socket with mode 0660 in a private folder, served by its own thread.

    With ``listener`` (a socket inherited from systemd) it serves that socket as is: systemd
    created the file, set its mode and owns it, so it is neither bound nor removed here.
    ``quick`` says which requests are answered on the event loop itself: only those that
    read memory and never wait.
    """

    # listen() backlog: a burst of clients connecting at once must not be refused (Unix
    # sockets refuse with EAGAIN instead of waiting); the kernel caps it at somaxconn.
    backlog = 128

    def __init__(
        self,
        path: Path,
        app: App,
        authorizer: Authorizer,
        max_body_bytes: int,
        listener: socket.socket | None = None,
        *,
        quick: Callable[[Request], bool] = lambda request: False,
        max_threads: int = 256,
        idle_timeout: float = 60.0,
    ) -> None:
        self.app = app
        self.authorizer = authorizer
        self.max_body_bytes = max_body_bytes
        self.idle_timeout = idle_timeout
        self.quick = quick
        self.path = path
        self.owns_path = listener is None
        self.connections: set[Connection] = set()
        self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        self._pool = _DaemonPool(max_threads)
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        if listener is not None:
            self.socket = listener
            bound = listener.getsockname()
            if isinstance(bound, str) and bound:
                self.path = Path(bound)
            return
        _prepare_socket_path(path)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # no window in which the socket is world-accessible
        try:
            self.socket.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        self.socket.listen(self.backlog)

    def run_blocking(self, job: Callable[[], None]) -> None:
        self._pool.submit(job)

    def start(self) -> None:
        # A request that has waited on a worker thread needs the interpreter lock back while
        # another thread computes (the main thread reading an update's progress, say): at
        # the default 5 ms switch interval p99 while an update trained was 16x idle; at
        # 0.5 ms it is within 2x (bench/api.py). Process-wide, and meant to be.
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        self.socket.setblocking(False)
        self._server = self.loop.run_until_complete(
            self.loop.create_unix_server(lambda: Connection(self), sock=self.socket)
        )
        self._thread = threading.Thread(target=self.loop.run_forever, name="tailord-api")
        self._thread.start()

    def alive(self) -> bool:
        """Whether the event loop's thread runs (systemd's watchdog is pinged only then)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop accepting, close every connection and the socket, remove its file (if ours)."""
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self._close_all)
            self._thread.join(timeout=5)
            self._thread = None
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()
        self._pool.shutdown()
        self.socket.close()
        if self.owns_path:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.closed = True  # a stream's thread sees it and stops
            if connection.transport is not None:
                connection.transport.abort()
        self.loop.stop()


class _DaemonPool:
    """Worker threads for routes that may block, started as needed and kept for reuse.

    Daemon threads, unlike ThreadPoolExecutor's: those are joined at interpreter exit,
    which a request waiting up to an hour for an update (``?wait=true``) would hold up.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            if self.idle == 0 and self.threads < self.limit:
                self.threads += 1
                threading.Thread(target=self._work, name="tailord-api-worker", daemon=True).start()
            else:
                self.idle -= 1  # claimed: the next submit must not count on this thread
        self.jobs.put(job)

    def shutdown(self) -> None:
        with self.lock:
            for _ in range(self.threads):
                self.jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                logger.exception("an API worker thread failed")
            with self.lock:
                self.idle += 1


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
