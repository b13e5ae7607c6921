"""A small typed client for tailord's socket API; ``tailorctl`` is built on it.

from tailord.daemon.ctl.client import Client
with Client() as client:
    print(client.version()["version"])
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from tailord.daemon.config import default_socket

SYSTEM_SOCKET = Path("/run/tailord/tailord.sock")


class ClientError(Exception):
    """The daemon answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class DaemonUnavailable(ClientError):
    """Nothing answers on the socket."""


class Forbidden(ClientError):
    """The daemon refused this user (its peer check: ``[api] allowed_users``)."""


def find_socket(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--socket``, else ``$TAILORD_SOCKET``, else the user's socket, else the system one."""
    if explicit:
        return Path(explicit)
    user = default_socket()
    if not os.environ.get("TAILORD_SOCKET") and not user.exists() and SYSTEM_SOCKET.exists():
        return SYSTEM_SOCKET
    return user


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix socket: for raw requests the Client does not make."""

    def __init__(self, path: Path, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """One keep-alive connection to the daemon's socket."""

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, timeout: float = 60):
        self.socket_path = find_socket(socket_path)
        self._conn = UnixHTTPConnection(self.socket_path, timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send one request; the decoded JSON answer, or :class:`ClientError`."""
        status, data = self._exchange(self._conn, method, path, body, content_type)
        return _decode(status, data)

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        *,
        stream: bool = False,
    ) -> tuple[int, bytes | http.client.HTTPResponse]:
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            try:
                reused = conn.sock is not None
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                if not reused:
                    raise
                # The daemon closed this keep-alive connection while it sat idle ([api]
                # idle_timeout), before reading the request: send it again on a new one.
                conn.close()
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
            if stream and response.status < 400:
                return response.status, response
            return response.status, response.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            conn.close()
            raise DaemonUnavailable(
                f"tailord is not running on {self.socket_path} "
                "(start it with `tailord serve`, or pass --socket / set TAILORD_SOCKET)"
            ) from exc
        except PermissionError as exc:
            conn.close()
            raise DaemonUnavailable(
                f"this user may not open {self.socket_path}; ask for the daemon's group "
                "(its socket is 0660 in a private folder)"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise DaemonUnavailable(f"lost the connection to tailord: {exc}") from exc

    def version(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/version")
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/status")
        return result

    def update(self, *, wait: bool = False, timeout: float | None = None) -> dict[str, Any]:
        """Ask for an update now: the update (id, state); with ``wait``, once it has ended."""
        query: dict[str, str] = {}
        if wait:
            query["wait"] = "true"
        if timeout is not None:
            query["timeout"] = f"{timeout:g}"
        path = "/v1/update" + (f"?{urlencode(query)}" if query else "")
        result: dict[str, Any] = self.request("POST", path, b"{}")
        return result

    def update_info(self, update_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/updates/{int(update_id)}")
        return result

    def versions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/v1/versions")["versions"]
        return result

    def version_info(self, number: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/versions/{int(number)}")
        return result

    def samples(
        self,
        *,
        state: str | None = None,
        label: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Counts and one page of samples; pass ``next_after`` back as ``after`` for more."""
        query = {"state": state, "label": label, "after": after, "limit": limit}
        encoded = urlencode({k: v for k, v in query.items() if v is not None})
        result: dict[str, Any] = self.request("GET", f"/v1/samples?{encoded}")
        return result

    def metrics(self) -> str:
        """The Prometheus text exposition."""
        status, data = self._exchange(self._conn, "GET", "/metrics")
        assert isinstance(data, bytes)
        if status >= 400:
            _decode(status, data)
        return data.decode()

    def openapi(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/openapi.json")
        return result

    def predict(self, inputs: list[list[float]], top: int = 1) -> dict[str, Any]:
        """``top`` > 1 adds each input's ``top`` best labels, best first."""
        body = json.dumps({"inputs": inputs}).encode()
        result: dict[str, Any] = self.request("POST", _predict_path(top), body)
        return result

    def predict_file(self, data: bytes, content_type: str, top: int = 1) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", _predict_path(top), data, content_type)
        return result

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Follow ``/v1/events``: each event as ``{"id", "type", "time", "data"}`` until the
        daemon stops. ``timeout``: seconds without a line (the daemon sends one at least
        every 15 s) before :class:`DaemonUnavailable` is raised."""
        with self.subscribe(timeout) as stream:
            yield from stream

    def subscribe(self, timeout: float | None = None) -> EventStream:
        """Subscribe now (on a connection of its own) and iterate later: no event published
        after this returns is missed."""
        conn = UnixHTTPConnection(self.socket_path, timeout)
        try:
            status, response = self._exchange(conn, "GET", "/v1/events", stream=True)
            if not isinstance(response, http.client.HTTPResponse):
                _decode(status, response)
                raise ClientError(f"tailord answered /v1/events with HTTP {status}")
        except BaseException:
            conn.close()
            raise
        return EventStream(conn, response)


class EventStream:
    """An open ``/v1/events`` subscription; iterate it for events, close it when done."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self._conn = conn
        self._response = response

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        data: list[str] = []
        while True:
            try:
                raw = self._response.readline()
            except OSError as exc:
                raise DaemonUnavailable(f"lost the event stream: {exc}") from exc
            if not raw:
                return  # the daemon closed the stream: it is stopping
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                event: dict[str, Any] = json.loads("\n".join(data))
                data = []
                yield event


def _decode(status: int, data: bytes | http.client.HTTPResponse) -> Any:
    if isinstance(data, http.client.HTTPResponse):
        data = data.read()
    try:
        payload = json.loads(data) if data else None
    except ValueError as exc:
        raise ClientError(
            f"tailord sent a body that is not JSON: {data[:80]!r}", status=status
        ) from exc
    if status >= 400:
        error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
        message = error.get("message", f"HTTP {status}")
        if status == 403:
            raise Forbidden(message, status=status, code=error.get("code", "forbidden"))
        raise ClientError(message, status=status, code=error.get("code", "error"))
    return payload


def _predict_path(top: int) -> str:
    return "/v1/predict" if top == 1 else f"/v1/predict?top={int(top)}"
