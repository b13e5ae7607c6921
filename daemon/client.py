"""A small typed client for tailord's socket API; ``tailorctl`` is built on it.

from tailord.daemon.client import Client
with Client() as client:
    print(client.version()["version"])
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

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


def find_socket(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--socket``, else ``$TAILORD_SOCKET``, else the user's socket, else the system one."""
    if explicit:
        return Path(explicit)
    user = default_socket()
    if not os.environ.get("TAILORD_SOCKET") and not user.exists() and SYSTEM_SOCKET.exists():
        return SYSTEM_SOCKET
    return user


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
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
        self._conn = _UnixConnection(self.socket_path, timeout)

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
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            data = response.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self._conn.close()
            raise DaemonUnavailable(
                f"tailord is not running on {self.socket_path} "
                "(start it with `tailord serve`, or pass --socket / set TAILORD_SOCKET)"
            ) from exc
        except PermissionError as exc:
            self._conn.close()
            raise DaemonUnavailable(
                f"this user may not open {self.socket_path}; ask for the daemon's group"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise DaemonUnavailable(f"lost the connection to tailord: {exc}") from exc
        try:
            payload = json.loads(data) if data else None
        except ValueError as exc:
            raise ClientError(f"tailord sent a body that is not JSON: {data[:80]!r}") from exc
        if response.status >= 400:
            error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
            raise ClientError(
                error.get("message", f"HTTP {response.status}"),
                status=response.status,
                code=error.get("code", "error"),
            )
        return payload

    def version(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/version")
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/status")
        return result

    def update(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/v1/update", b"{}")
        return result

    def predict(self, inputs: list[list[float]]) -> dict[str, Any]:
        body = json.dumps({"inputs": inputs}).encode()
        result: dict[str, Any] = self.request("POST", "/v1/predict", body)
        return result

    def predict_file(self, data: bytes, content_type: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/v1/predict", data, content_type)
        return result
