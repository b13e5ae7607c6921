"""A typed client for tailord's socket API; ``tailorctl`` is built on it.

One method per route of :data:`tailord.daemon.api.routes.ROUTES`, named after it, answering
the route's body struct (decoded and checked by msgspec)::

    from tailord.daemon.ctl.client import Client
    with Client() as client:
        print(client.version().version)

:meth:`Client.request` sends any request and answers the decoded JSON as is, for scripts
and for tests of the wire format.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import msgspec

from tailord.daemon.api import bodies
from tailord.daemon.api.routes import BY_NAME
from tailord.daemon.ctl.transport import Answer, Connection, StaleConnection
from tailord.daemon.errors import TailordError
from tailord.daemon.paths import SYSTEM_SOCKET, default_socket

T = TypeVar("T")
JSON = "application/json"
_ERROR = msgspec.json.Decoder(bodies.ErrorBody)
_EVENT = msgspec.json.Decoder(bodies.Event)


class ClientError(TailordError):
    """tailord answered with an error; its message says what to do (see `tailorctl status`)."""

    def __init__(
        self, message: str | None = None, *, status: int | None = None, code: str = "error"
    ) -> None:
        super().__init__(message)
        self.message = str(self)
        self.status = status  # the HTTP status, when the daemon answered
        self.code = code  # the error body's code, for programs


class DaemonUnavailable(ClientError):
    """tailord is not answering on its socket; start it (`tailord serve`) or pass --socket."""


class Forbidden(ClientError):
    """tailord refused this user; ask to be added to its [api] allowed_users (or a group)."""


def find_socket(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--socket``, else ``$TAILORD_SOCKET``, else the user's socket, else the system one."""
    if explicit:
        return Path(explicit)
    user = default_socket()
    if not os.environ.get("TAILORD_SOCKET") and not user.exists() and SYSTEM_SOCKET.exists():
        return SYSTEM_SOCKET
    return user


class Client:
    """One keep-alive connection to the daemon's socket."""

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, timeout: float = 60):
        self.socket_path = find_socket(socket_path)
        self._conn = Connection(self.socket_path, timeout)

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

    # -- the routes, one method each (tests/daemon/test_ctl.py checks the table) -----

    def version(self) -> bodies.CurrentVersion:
        return self._call("version", bodies.CurrentVersion)

    def status(self) -> bodies.Status:
        return self._call("status", bodies.Status)

    def versions(self) -> bodies.VersionList:
        return self._call("versions", bodies.VersionList)

    def version_info(self, number: int) -> bodies.VersionDetail:
        return self._call("version_info", bodies.VersionDetail, n=number)

    def update(
        self,
        params: bodies.UpdateRequest | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        defer: bool = False,
    ) -> bodies.UpdateInfo:
        """Ask for an update now: the update (id, state); with ``wait``, once it has ended
        (or ``timeout`` seconds have passed: then it is still pending or running); with
        ``defer``, once the policy's conditions hold rather than now. ``params``: this
        update's own ``[update]`` parameters (and ``k``)."""
        query: dict[str, object] = {}
        if wait:
            query["wait"] = "true"
        if defer:
            query["defer"] = "true"
        if timeout is not None:
            query["timeout"] = f"{timeout:g}"
        body = b"{}" if params is None else msgspec.json.encode(params)
        return self._call("update", bodies.UpdateInfo, query=query, body=body)

    def forget(self, request: bodies.ForgetRequest) -> bodies.ForgetResult:
        """Forget samples (by id, sha256 or label): what was removed and how long it took."""
        return self._call("forget", bodies.ForgetResult, body=msgspec.json.encode(request))

    def update_info(self, update_id: int) -> bodies.UpdateInfo:
        return self._call("update_info", bodies.UpdateInfo, id=update_id)

    def cancel(self, update_id: int) -> bodies.UpdateInfo:
        """Cancel update ``update_id``: answered once it has ended ``cancelled``."""
        return self._call("cancel", bodies.UpdateInfo, id=update_id)

    def rollback(self, version: int | None = None) -> bodies.RollbackResult:
        """Make ``version`` current again; None: the current version's parent."""
        body = b"" if version is None else msgspec.json.encode(bodies.RollbackRequest(version))
        return self._call("rollback", bodies.RollbackResult, body=body)

    def pin(self, version: int) -> bodies.PinResult:
        body = msgspec.json.encode(bodies.VersionRequest(version))
        return self._call("pin", bodies.PinResult, body=body)

    def unpin(self, version: int) -> bodies.PinResult:
        body = msgspec.json.encode(bodies.VersionRequest(version))
        return self._call("unpin", bodies.PinResult, body=body)

    def import_base(self, data: bytes) -> bodies.ImportResult:
        """Publish a .safetensors model (the file's bytes) as a new version."""
        return self._call(
            "import_base", bodies.ImportResult, body=data, content_type="application/octet-stream"
        )

    def predict(
        self, inputs: list[list[float] | str | dict[str, str]], top: int = 1
    ) -> bodies.Predictions:
        """Vectors as lists, texts as strings, images as ``{"image": "<base64>"}``; ``top``
        > 1 adds each input's ``top`` best labels, best first."""
        body = msgspec.json.encode(bodies.PredictRequest(inputs))
        return self._call("predict", bodies.Predictions, query=_top(top), body=body)

    def predict_file(self, data: bytes, content_type: str, top: int = 1) -> bodies.Predictions:
        """One sample file as the body, ``content_type`` standing for its kind."""
        return self._call(
            "predict", bodies.Predictions, query=_top(top), body=data, content_type=content_type
        )

    def samples(
        self,
        *,
        state: bodies.SampleState | None = None,
        label: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> bodies.SamplePage:
        """Counts and one page of samples; pass ``next_after`` back as ``after`` for more."""
        query = {"state": state, "label": label, "after": after, "limit": limit}
        return self._call("samples", bodies.SamplePage, query=query)

    def add_samples(self, samples: list[bodies.JsonObject]) -> bodies.AddedSamples:
        """Add samples, each ``{"label": ..., "vector" | "text" | "image": ...}`` (a regress
        model: ``"target"``), all or none."""
        body = msgspec.json.encode(bodies.AddRequest(samples))
        return self._call("add_samples", bodies.AddedSamples, body=body)

    def add_file(self, data: bytes, content_type: str, label: str | None) -> bodies.AddedSamples:
        """Add one sample file (``content_type`` standing for its kind) under ``label``, or a
        JSONL batch (``application/x-ndjson``, labels inside: ``label`` None)."""
        query = {"label": label}
        return self._call(
            "add_samples", bodies.AddedSamples, query=query, body=data, content_type=content_type
        )

    def requeue(
        self,
        ids: list[int] | None = None,
        *,
        label: str | None = None,
        state: bodies.SampleState | None = None,
    ) -> bodies.RequeueResult:
        """Queue again the samples matching every filter given (their label stays)."""
        asked = bodies.RequeueRequest(
            ids=ids or msgspec.UNSET,
            label=msgspec.UNSET if label is None else label,
            state=msgspec.UNSET if state is None else state,
        )
        return self._call("requeue", bodies.RequeueResult, body=msgspec.json.encode(asked))

    def events(self, timeout: float | None = None) -> Iterator[bodies.Event]:
        """Follow ``/v1/events`` until the daemon stops. ``timeout``: seconds without a line
        (the daemon sends one at least every 15 s) before :class:`DaemonUnavailable`."""
        with self.subscribe(timeout) as stream:
            yield from stream

    def metrics(self) -> str:
        """The Prometheus text exposition."""
        return self._text("metrics")

    def openapi(self) -> bodies.JsonObject:
        """The OpenAPI document (its JSON Schemas stay plain JSON: they are for other tools)."""
        return self._call("openapi", bodies.JsonObject)

    # -- the plumbing ----------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = JSON
    ) -> Any:
        """Send one request; the decoded JSON answer as is, or :class:`ClientError`."""
        data = self._body(method, path, body, content_type)
        try:
            return msgspec.json.decode(data) if data else None
        except msgspec.DecodeError as exc:
            raise ClientError(f"tailord sent a body that is not JSON: {data[:80]!r}") from exc

    def subscribe(self, timeout: float | None = None) -> EventStream:
        """Subscribe now (on a connection of its own) and iterate later: no event published
        after this returns is missed."""
        conn = Connection(self.socket_path, timeout)
        try:
            answer = self._exchange(conn, "GET", BY_NAME["events"].path)
            if answer.status >= 400:
                _check(answer.status, conn.read_body(answer))
        except BaseException:
            conn.close()
            raise
        return EventStream(conn, answer)

    def _call(
        self,
        name: str,
        answer: type[T],
        *,
        query: Mapping[str, object] | None = None,
        body: bytes | None = None,
        content_type: str = JSON,
        **path_args: int,
    ) -> T:
        """Route ``name``'s request, its answer decoded as ``answer`` (the route's type)."""
        route = BY_NAME[name]
        path = route.path.format(**{k: int(v) for k, v in path_args.items()})
        if query:
            encoded = urlencode({k: v for k, v in query.items() if v is not None}, quote_via=quote)
            path += f"?{encoded}" if encoded else ""
        data = self._body(route.method, path, body, content_type)
        try:
            return msgspec.json.decode(data, type=answer)
        except msgspec.ValidationError as exc:
            raise ClientError(
                f"tailord's answer to {route.method} {route.path} does not fit this client "
                f"({exc}); use the tailorctl installed with the daemon"
            ) from exc
        except msgspec.DecodeError as exc:
            raise ClientError(f"tailord sent a body that is not JSON: {data[:80]!r}") from exc

    def _text(self, name: str) -> str:
        route = BY_NAME[name]
        return self._body(route.method, route.path).decode()

    def _body(
        self, method: str, path: str, body: bytes | None = None, content_type: str = JSON
    ) -> bytes:
        """The body of a successful answer; :class:`ClientError` for an error."""
        answer = self._exchange(self._conn, method, path, body, content_type)
        try:
            data = self._conn.read_body(answer)
        except OSError as exc:
            raise self._lost(exc) from exc
        _check(answer.status, data)
        return data

    def _exchange(
        self,
        conn: Connection,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = JSON,
    ) -> Answer:
        """Send one request; the answer's head (its body is still to be read)."""
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            try:
                return conn.exchange(method, path, body, headers)
            except StaleConnection:
                # The daemon closed this keep-alive connection while it sat idle ([api]
                # idle_timeout), before reading the request: send it again on a new one.
                return conn.exchange(method, path, body, headers)
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
        except OSError as exc:
            conn.close()
            raise self._lost(exc) from exc

    @staticmethod
    def _lost(exc: OSError) -> DaemonUnavailable:
        return DaemonUnavailable(f"lost the connection to tailord: {exc}")


class EventStream:
    """An open ``/v1/events`` subscription; iterate it for events, close it when done."""

    def __init__(self, conn: Connection, answer: Answer):
        self._conn = conn
        self._answer = answer

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def __iter__(self) -> Iterator[bodies.Event]:
        try:
            yield from self._events()
        finally:
            # Ended (the daemon stopped, or the caller stopped iterating): nothing more comes
            # on this connection, so it is closed here rather than left to the collector.
            self.close()

    def _events(self) -> Iterator[bodies.Event]:
        data: list[bytes] = []
        while True:
            try:
                raw = self._answer.stream.readline()
            except ValueError:  # closed (by close(), from another thread): the end
                return
            except OSError as exc:
                raise DaemonUnavailable(f"lost the event stream: {exc}") from exc
            if not raw:
                return  # the daemon closed the stream: it is stopping
            line = raw.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                data.append(line[5:].strip())
            elif not line and data:
                try:
                    event = _EVENT.decode(b"\n".join(data))
                except msgspec.DecodeError as exc:  # ValidationError is one too
                    raise ClientError(
                        f"tailord sent an event this client cannot read: {exc}"
                    ) from exc
                data = []
                yield event


def _check(status: int, data: bytes) -> None:
    """Raise the daemon's error, if ``status`` is one."""
    if status < 400:
        return
    try:
        error = _ERROR.decode(data).error
        message, code = error.message, error.code
    except msgspec.DecodeError:  # not our error body: a proxy, or a daemon of another make
        message, code = f"HTTP {status}: {data[:80]!r}", "error"
    if status == 403:
        raise Forbidden(message, status=status, code=code)
    raise ClientError(message, status=status, code=code)


def _top(top: int) -> dict[str, object]:
    return {"top": int(top)} if top != 1 else {}
