"""The socket server itself: socket activation, the peer check, answers to malformed HTTP."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailord.daemon.api.context import ApiContext
from tailord.daemon.api.handlers import Api
from tailord.daemon.config import load_config
from tailord.daemon.events import EventBus
from tailord.daemon.http.auth import Authorizer
from tailord.daemon.http.server import UnixHTTPServer, inherited_socket
from tailord.daemon.http.wire import Request, Response, json_response
from tailord.daemon.inbox.stats import IngestStats
from tailord.daemon.inbox.watcher import PendingPaths
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.daemon.versions.serving import Serving
from tailord.storage.db import open_database
from tailord.storage.versions import VersionStore
from tests.conftest import DaemonProcess, require_others_may_enter_the_checkout, wait_for

SERVE = "import sys; from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())"
NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)


def raw(sock_path: Path, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is; the status, headers and body of the answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(sock_path))
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.slow
def test_socket_activation_serves_the_inherited_socket_and_leaves_it(short_tmp: Path) -> None:
    proc = DaemonProcess(short_tmp)
    proc.socket.parent.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(proc.socket))
    listener.listen(16)
    # What systemd does: the socket on fd 3, LISTEN_FDS=1 and LISTEN_PID = the service's pid
    # (the shell's $$ is the pid the exec'd Python keeps).
    script = 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"'
    args = [
        *("sh", "-c", script, sys.executable, "-c", SERVE, "serve"),
        *("--data-dir", str(proc.data_dir), "--inbox", str(proc.inbox)),
        # A socket path that would fail to bind: the daemon must not try.
        *("--socket", str(short_tmp / "nowhere" / "deeper" / "x.sock")),
    ]
    with proc.log.open("ab") as log:  # the child keeps its own copy
        proc.process = subprocess.Popen(
            args,
            stdout=log,
            stderr=log,
            pass_fds=[3],
            # In the child, before exec; this test starts no threads of its own.
            preexec_fn=lambda: os.dup2(listener.fileno(), 3),  # noqa: PLW1509
        )
    listener.close()  # the daemon holds its own copy now
    try:
        wait_for(proc._answers, timeout=60)
        status, _, body = raw(proc.socket, b"GET /v1/version HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert status == 200
        assert json.loads(body)["version"] == 0
        assert not (short_tmp / "nowhere").exists()
    finally:
        assert proc.stop() == 0
    assert proc.socket.exists(), "the daemon removed a socket systemd owns"
    assert "LISTEN_PID" not in proc.log.read_text()


def test_listen_pid_of_another_process_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert inherited_socket() is None
    assert "LISTEN_PID" not in os.environ  # never passed on to the update worker


@pytest.fixture
def shared_daemon() -> Iterator[DaemonProcess]:
    """A daemon whose socket folder and file the group ``nogroup`` may reach (as systemd's
    SocketGroup= would set up), so that only the peer check stands between nobody and it."""
    require_others_may_enter_the_checkout()  # nobody runs this checkout's Python
    root = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
    root.chmod(0o755)
    proc = DaemonProcess(root)
    proc.socket.parent.mkdir(mode=0o750)
    os.chown(proc.socket.parent, -1, NOGROUP.gr_gid)
    yield proc
    if proc.process is not None:
        proc.close()
    shutil.rmtree(root, ignore_errors=True)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *args],
        # Under the coverage run (scripts/test.sh), coverage measures every child Python and
        # would write its data file as nobody, who may not: a traceback at exit, not ours.
        env={k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_another_uid_is_refused_by_the_peer_check(shared_daemon: DaemonProcess) -> None:
    shared_daemon.start()
    os.chown(shared_daemon.socket, -1, NOGROUP.gr_gid)
    curl = _as_nobody(
        "curl", "-s", "-w", "\n%{http_code}", "--unix-socket", str(shared_daemon.socket),
        "http://localhost/v1/version",
    )  # fmt: skip
    body, _, status = curl.stdout.rpartition("\n")
    assert status == "403", curl
    error = json.loads(body)["error"]
    assert error["code"] == "forbidden"
    assert f"uid {NOBODY.pw_uid}" in error["message"]
    assert "allowed_users" in error["message"]

    ctl = _as_nobody(
        sys.executable,
        "-c",
        "import sys; from tailord.daemon.ctl.main import main; sys.exit(main())",
        "--socket",
        str(shared_daemon.socket),
        "status",
    )
    assert ctl.returncode == 1
    assert "may not use tailord" in ctl.stderr
    assert "Traceback" not in ctl.stderr


@pytest.mark.slow
def test_allowed_users_lets_another_uid_in(shared_daemon: DaemonProcess) -> None:
    config = shared_daemon.root / "tailord.toml"
    config.write_text('[api]\nallowed_users = ["nobody"]\n')
    shared_daemon.start("--config", str(config))
    os.chown(shared_daemon.socket, -1, NOGROUP.gr_gid)
    curl = _as_nobody(
        "curl", "-sf", "--unix-socket", str(shared_daemon.socket), "http://localhost/v1/version"
    )  # fmt: skip
    assert curl.returncode == 0, curl
    assert json.loads(curl.stdout)["version"] == 0


@pytest.mark.slow
def test_a_user_without_access_to_the_socket_gets_a_clear_message(
    shared_daemon: DaemonProcess,
) -> None:
    shared_daemon.start()  # the socket stays root:root 0660: nobody cannot even connect
    ctl = _as_nobody(
        sys.executable,
        "-c",
        "import sys; from tailord.daemon.ctl.main import main; sys.exit(main())",
        "--socket",
        str(shared_daemon.socket),
        "version",
    )
    assert ctl.returncode == 1
    assert "may not open" in ctl.stderr, ctl.stderr


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE / HTTP/1.1\r\n\r\n", 405, "method_not_allowed"),
        (b"GET /v1/version HTTP/9.9\r\n\r\n", 505, "http_version_not_supported"),
        (b"GET /v1/version HTTP/x\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
        (b"GET a\x01b HTTP/1.1\r\n\r\n", 400, "bad_request"),
        (b"GET http://[::1/v1/version HTTP/1.1\r\n\r\n", 400, "bad_request"),
        (b"POST /v1/predict HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "bad_request"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
            "bad_request",
        ),
        (
            b"POST /v1/predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            411,
            "length_required",
        ),
        (b"POST /v1/predict HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413, "body_too_large"),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431, "headers_too_large"),
    ],
)
def test_malformed_http_is_answered_in_json(
    short_tmp: Path, request_bytes: bytes, status: int, code: str
) -> None:
    server = _bare_server(short_tmp)
    try:
        got, headers, body = raw(server.path, request_bytes)
    finally:
        server.stop()
    assert got == status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert error["message"]


def test_no_version_loaded_is_503(short_tmp: Path) -> None:
    server = _bare_server(short_tmp)
    try:
        status, _, body = raw(server.path, b"GET /v1/version HTTP/1.1\r\nConnection: close\r\n\r\n")
    finally:
        server.stop()
    assert status == 503
    assert json.loads(body)["error"]["code"] == "not_ready"
    assert not server.path.exists()  # bound by the server itself: removed at stop


def _bare_server(root: Path) -> UnixHTTPServer:
    """The real server and routes on a daemon's parts before any version is loaded."""
    config = load_config(data_dir=root / "data", socket=root / "run" / "s.sock")
    db = open_database(config.database)
    store, events, serving = VersionStore(config.data_dir), EventBus(), Serving()
    ctx = ApiContext(
        db=db,
        store=store,
        serving=serving,
        updater=Updater(config, db, store, serving, events, lambda: True),
        history=History(store, db, serving, events, config.model, config.versions.keep),
        events=events,
        ingest=IngestStats(),
        pending=PendingPaths(),
        policy_reason=lambda: "starting",
        requested=lambda: None,
    )
    server = UnixHTTPServer(config.socket, Api(ctx), Authorizer((), ()), 1024)
    server.start()
    return server


class _Gate:
    """An app whose ``/slow`` waits until released: a route that blocks, for real."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, request: Request) -> Response:
        if request.path == "/slow":
            self.release.wait(30)
        return json_response(200, {"path": request.path, "body": request.body.decode()})

    def quick(self, request: Request) -> bool:
        return request.path == "/fast"


@pytest.fixture
def gate_server(short_tmp: Path) -> Iterator[tuple[UnixHTTPServer, _Gate]]:
    app = _Gate()
    server = UnixHTTPServer(
        short_tmp / "run" / "s.sock", app, Authorizer((), ()), 1024, quick=app.quick
    )
    server.start()
    yield server, app
    app.release.set()
    server.stop()


def _responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, object]]]:
    """Read ``count`` responses off a keep-alive connection."""
    reader = sock.makefile("rb")
    answers = []
    for _ in range(count):
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        answers.append((status, json.loads(reader.read(length))))
    return answers


def test_a_blocking_route_never_holds_up_a_quick_one(
    gate_server: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, app = gate_server
    with socket.socket(socket.AF_UNIX) as slow, socket.socket(socket.AF_UNIX) as fast:
        slow.settimeout(10)
        fast.settimeout(10)
        slow.connect(str(server.path))
        slow.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        fast.connect(str(server.path))
        for _ in range(3):  # the quick route, and a blocking one on another thread
            fast.sendall(b"GET /fast HTTP/1.1\r\n\r\nGET /other HTTP/1.1\r\n\r\n")
            assert [a[1]["path"] for a in _responses(fast, 2)] == ["/fast", "/other"]
        app.release.set()
        assert _responses(slow, 1) == [(200, {"path": "/slow", "body": ""})]


def test_pipelined_requests_are_answered_in_order(
    gate_server: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, app = gate_server
    app.release.set()
    requests = (
        b"GET /slow HTTP/1.1\r\n\r\n"
        b"GET /fast HTTP/1.1\r\n\r\n"
        b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
        b"GET /fast HTTP/1.1\r\n\r\n"
    )
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(server.path))
        sock.sendall(requests)
        answers = _responses(sock, 4)
    assert [a[1]["path"] for a in answers] == ["/slow", "/fast", "/a", "/fast"]
    assert answers[2][1]["body"] == "xyz"


def test_a_large_body_is_asked_for_with_100_continue(
    gate_server: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, _ = gate_server
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(server.path))
        sock.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        assert _responses(sock, 1) == [(200, {"path": "/a", "body": "data"})]


def test_connection_close_and_http_1_0_end_the_connection(
    gate_server: tuple[UnixHTTPServer, _Gate],
) -> None:
    server, _ = gate_server
    for request in (
        b"GET /fast HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /other HTTP/1.0\r\n\r\n",
    ):
        status, headers, _ = raw(server.path, request)  # reads until the server closes
        assert status == 200
        assert headers["connection"] == "close"
