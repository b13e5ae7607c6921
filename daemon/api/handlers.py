"""The socket API's routes: ``/v1/...`` requests in, JSON out.

Errors are ``{"error": {"code": ..., "message": ...}}`` with a fitting status; the message
says what to do. Parameters are ids, never paths.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from tailord.daemon.api.openapi import openapi_document
from tailord.daemon.api.params import ApiError, bool_param, int_param, number_param, text_param
from tailord.daemon.api.predict import predict
from tailord.daemon.events import EventBus
from tailord.daemon.http.wire import Request, Response, error_response, json_response
from tailord.daemon.metrics import Metrics
from tailord.daemon.updates.info import UpdateInfo
from tailord.daemon.updates.updater import NothingQueued
from tailord.daemon.versions.history import HistoryError
from tailord.daemon.versions.info import ImportResult, PinResult, RollbackResult
from tailord.daemon.versions.serving import LoadFailed, Served
from tailord.storage.errors import VersionNotFound

logger = logging.getLogger(__name__)

MAX_PAGE = 1000
MAX_WAIT_SECONDS = 3600.0
SSE_KEEPALIVE_SECONDS = 15.0  # a comment line this often finds clients that went away
SAMPLE_STATES = ("queued", "learned")


class Backend(Protocol):
    """What the API needs from the running daemon."""

    events: EventBus

    def served(self) -> Served | None: ...
    def status(self) -> dict[str, Any]: ...
    def request_update(self) -> UpdateInfo: ...
    def update_info(self, update_id: int) -> UpdateInfo | None: ...
    def wait_update(self, update_id: int, timeout: float) -> UpdateInfo | None: ...
    def versions(self) -> list[dict[str, Any]]: ...
    def version_info(self, number: int) -> dict[str, Any] | None: ...
    def samples(
        self, *, state: str | None, label: str | None, after_id: int | None, limit: int
    ) -> dict[str, Any]: ...
    def rollback(self, number: int | None) -> RollbackResult: ...
    def pin(self, number: int, pinned: bool) -> PinResult: ...
    def import_base(self, data: bytes) -> ImportResult: ...


class Api:
    """Routes requests to handlers; an instance is the server's ``App``."""

    def __init__(self, backend: Backend, metrics: Metrics | None = None) -> None:
        self.backend = backend
        self.metrics = metrics
        self.routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/v1/version"): self.version,
            ("GET", "/v1/status"): self.status,
            ("POST", "/v1/predict"): lambda request: predict(self._served(), request),
            ("POST", "/v1/update"): self.update,
            ("GET", "/v1/versions"): self.versions,
            ("GET", "/v1/samples"): self.samples,
            ("GET", "/v1/events"): self.events,
            ("GET", "/metrics"): self.prometheus,
            ("GET", "/v1/openapi.json"): self.openapi,
            ("POST", "/v1/rollback"): self.rollback,
            ("POST", "/v1/pin"): self.pin,
            ("POST", "/v1/unpin"): self.unpin,
            ("POST", "/v1/import-base"): self.import_base,
        }
        self._version_body: tuple[Served | None, bytes] = (None, b"")  # swapped whole
        # Paths with one id in them: ``{name}`` matches one path segment, a whole number.
        self.id_routes: dict[tuple[str, str], Callable[[Request, int], Response]] = {
            ("GET", "/v1/versions/{n}"): self.version_detail,
            ("GET", "/v1/updates/{id}"): self.update_detail,
        }

    def quick(self, request: Request) -> bool:
        """Whether the request only reads memory, so the server may answer it on its event
        loop without a hop to a worker thread (the one route polled at high rates)."""
        return request.path == "/v1/version" and request.method in ("GET", "HEAD")

    def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        route, response = self._route(request)
        if self.metrics is not None:
            seconds = time.perf_counter() - started
            self.metrics.observe_request(request.method, route, response.status, seconds)
        return response

    def _route(self, request: Request) -> tuple[str, Response]:
        """The route's template (a bounded metrics label) and the response."""
        method = "GET" if request.method == "HEAD" else request.method
        route = request.path
        try:
            handler = self.routes.get((method, request.path))
            if handler is not None:
                return route, handler(request)
            allowed = sorted(m for m, p in self.routes if p == request.path)
            for (m, template), id_handler in self.id_routes.items():
                value = _match(template, request.path)
                if value is None:
                    continue
                route = template
                if m == method:
                    return route, id_handler(request, _whole_number(template, value))
                allowed.append(m)
            if allowed:
                raise ApiError(
                    405,
                    "method_not_allowed",
                    f"{request.path} takes {', '.join(sorted(allowed))}, not {request.method}",
                    allow=", ".join(sorted(set(allowed))),
                )
            route = "other"
            raise ApiError(
                404,
                "not_found",
                f"no endpoint {request.path}; the API lives under /v1/ "
                "(the list is at /v1/openapi.json)",
            )
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message)
            if exc.allow:
                response.headers["Allow"] = exc.allow
            return route, response

    def _served(self) -> Served:
        served = self.backend.served()
        if served is None:
            raise ApiError(503, "not_ready", "no version is loaded yet; try again in a moment")
        return served

    def version(self, request: Request) -> Response:
        served = self._served()
        cached = self._version_body
        if cached[0] is not served:  # a version is immutable: encode its answer once
            manifest = served.manifest
            body = json_response(
                200,
                {
                    "version": served.number,
                    "parent": manifest.get("parent"),
                    "created_at": manifest.get("created_at"),
                    "labels": manifest.get("labels", []),
                    "sample_count": manifest.get("sample_count", 0),
                },
            ).body
            cached = self._version_body = (served, body)
        return Response(200, cached[1])

    def status(self, request: Request) -> Response:
        return json_response(200, self.backend.status())

    def update(self, request: Request) -> Response:
        wait = bool_param(request, "wait")
        timeout = number_param(request, "timeout", 600.0, 0.0, MAX_WAIT_SECONDS)
        try:
            accepted = self.backend.request_update()
        except NothingQueued as exc:
            raise ApiError(409, "nothing_queued", str(exc)) from exc
        if not wait:
            return json_response(202, accepted)
        finished = self.backend.wait_update(accepted.id, timeout)
        if finished is None:  # cannot happen: rows are never deleted
            raise ApiError(404, "not_found", f"update {accepted.id} vanished")
        # Still running after ``timeout``: 202, like an answer without waiting.
        return json_response(202 if finished.active else 200, finished)

    def update_detail(self, request: Request, update_id: int) -> Response:
        info = self.backend.update_info(update_id)
        if info is None:
            raise ApiError(
                404, "not_found", f"there is no update {update_id}; see /v1/status for the last one"
            )
        return json_response(200, info)

    def versions(self, request: Request) -> Response:
        return json_response(200, {"versions": self.backend.versions()})

    def version_detail(self, request: Request, number: int) -> Response:
        info = self.backend.version_info(number)
        if info is None:
            raise ApiError(
                404, "not_found", f"there is no version {number}; list them at /v1/versions"
            )
        return json_response(200, info)

    def samples(self, request: Request) -> Response:
        state = text_param(request, "state")
        if state is not None and state not in SAMPLE_STATES:
            raise ApiError(400, "bad_parameter", f"state must be one of {', '.join(SAMPLE_STATES)}")
        after = int_param(request, "after", None, 0, 2**62)
        limit = int_param(request, "limit", 100, 1, MAX_PAGE)
        assert limit is not None
        page = self.backend.samples(
            state=state, label=text_param(request, "label"), after_id=after, limit=limit
        )
        return json_response(200, page)

    def events(self, request: Request) -> Response:
        subscription = self.backend.events.subscribe()

        def stream() -> Iterator[bytes]:
            try:
                while True:
                    event = subscription.get(timeout=SSE_KEEPALIVE_SECONDS)
                    if event is not None:
                        yield event.to_sse()
                    elif subscription.closed:
                        return  # the daemon is stopping
                    else:
                        yield b": keep-alive\n\n"
            finally:
                subscription.close()

        if request.method == "HEAD":
            subscription.close()
            return Response(200, b"", "text/event-stream")
        return Response(
            200,
            b": tailord events\n\n",  # sent at once, so a client knows it is subscribed
            "text/event-stream",
            {"Cache-Control": "no-cache"},
            stream=stream(),
        )

    def prometheus(self, request: Request) -> Response:
        if self.metrics is None:
            raise ApiError(503, "not_ready", "metrics are not set up yet; try again in a moment")
        body, content_type = self.metrics.render()
        return Response(200, body, content_type)

    def openapi(self, request: Request) -> Response:
        return json_response(200, openapi_document())

    def rollback(self, request: Request) -> Response:
        """``{"version": N}`` makes N current again; no body rolls back to the parent."""
        number = _version_in(request, required=False)
        return _history_call(lambda: self.backend.rollback(number))

    def pin(self, request: Request) -> Response:
        number = _version_in(request, required=True)
        assert number is not None
        return _history_call(lambda: self.backend.pin(number, True))

    def unpin(self, request: Request) -> Response:
        number = _version_in(request, required=True)
        assert number is not None
        return _history_call(lambda: self.backend.pin(number, False))

    def import_base(self, request: Request) -> Response:
        """The body is a .safetensors file (never a path: the daemon opens no caller's files)."""
        if not request.body:
            raise ApiError(422, "bad_input", "send the .safetensors file as the request body")
        return _history_call(lambda: self.backend.import_base(request.body))


def _match(template: str, path: str) -> str | None:
    """The id in ``path`` if it has the shape of ``template`` (one ``{name}`` segment)."""
    pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
    pattern = re.sub(r"\{[a-z_]+\}", "([^/]+)", pattern)
    found = re.fullmatch(pattern, path)
    return None if found is None else found.group(1)


def _whole_number(template: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise ApiError(
            400, "bad_parameter", f"{template}: {value!r} is not an id; ids are whole numbers"
        )
    return int(value)


def _version_in(request: Request, *, required: bool) -> int | None:
    try:
        payload = json.loads(request.body) if request.body.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from exc
    number = payload.get("version") if isinstance(payload, dict) else None
    if number is None and not required:
        return None
    # Bounded like path ids: SQLite integers are 64-bit, a bigger number is no version.
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 10**18:
        raise ApiError(422, "bad_input", 'send {"version": N} with N a version number')
    return number


def _history_call(call: Callable[[], RollbackResult | PinResult | ImportResult]) -> Response:
    try:
        return json_response(200, call())
    except VersionNotFound as exc:
        raise ApiError(404, "version_not_found", str(exc)) from exc
    except LoadFailed as exc:
        raise ApiError(409, "load_failed", f"{exc}; the current version keeps serving") from exc
    except HistoryError as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
