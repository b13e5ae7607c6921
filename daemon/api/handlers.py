"""The socket API's handlers: ``/v1/...`` requests in, body structs out.

The router is built from the route table (``routes.py``): each route's ``name`` is a method
here. A handler returns a body (encoded with the route's success status) or a whole
:class:`Response` (another status, a stream). Errors are ``{"error": {"code", "message"}}``
with a fitting status; the message says what to do. Parameters are ids, never paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import msgspec

from tailord.daemon.api import bodies, reads, steer
from tailord.daemon.api.add import add_samples
from tailord.daemon.api.context import ApiContext
from tailord.daemon.api.openapi import openapi_document
from tailord.daemon.api.params import ApiError, read_query, whole_floats, whole_number
from tailord.daemon.api.predict import predict
from tailord.daemon.api.routes import ROUTES, Route
from tailord.daemon.api.steer import update_request, who
from tailord.daemon.api.waits import UpdateWait
from tailord.daemon.http.wire import Request, Response
from tailord.daemon.updates.cancel import NoSuchUpdate, NotCancellable, cancel
from tailord.daemon.updates.forget import ForgetFailed, ForgetRefused, NothingToForget
from tailord.daemon.updates.overrides import BadParameters
from tailord.daemon.updates.requested import NothingQueued, ParametersDiffer
from tailord.daemon.versions.history import HistoryError
from tailord.daemon.versions.serving import LoadFailed, Served
from tailord.storage.errors import VersionNotFound

logger = logging.getLogger(__name__)

SSE_KEEPALIVE_SECONDS = 15.0  # a comment line this often finds clients that went away
MAX_ID = 10**18  # SQLite integers are 64-bit: a longer id names no row
METHODS = frozenset({"GET", "HEAD", "POST", "DELETE"})  # metric label values, with "other"

Answer = msgspec.Struct | Response
Handler = Callable[..., Answer]
T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)


class Api:
    """Routes requests to handlers; an instance is the server's ``App``."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._exact: dict[tuple[str, str], tuple[Route, Handler]] = {}
        self._templated: list[tuple[Route, Handler]] = []
        for route in ROUTES:
            handler: Handler = getattr(self, route.name)
            if "{" in route.path:
                self._templated.append((route, handler))
            else:
                self._exact[route.method, route.path] = (route, handler)
        self._version_body: tuple[Served | None, bytes] = (None, b"")  # swapped whole

    def quick(self, request: Request) -> bool:
        """Whether the request only reads memory, so the server may answer it on its event
        loop without a hop to a worker thread (the one route polled at high rates)."""
        return request.path == "/v1/version" and request.method in ("GET", "HEAD")

    def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        template, response = self._route(request)
        metrics = self.ctx.metrics
        if metrics is not None:
            seconds = time.perf_counter() - started
            # The parser takes any of ~35 method names; a label per name would let clients
            # grow /metrics: the API's own four, else "other".
            method = request.method if request.method in METHODS else "other"
            metrics.observe_request(method, template, response.status, seconds)
        return response

    def _route(self, request: Request) -> tuple[str, Response]:
        """The route's template (a bounded metrics label) and the response."""
        method = "GET" if request.method == "HEAD" else request.method
        template = request.path
        try:
            found = self._exact.get((method, request.path))
            if found is not None:
                return template, _respond(found[0], found[1](request))
            allowed = [m for m, p in self._exact if p == request.path]
            for route, handler in self._templated:
                match = route.pattern.fullmatch(request.path)
                if match is None:
                    continue
                template = route.path
                if route.method == method:
                    ids = [_whole_number(route.path, v) for v in match.groups()]
                    return template, _respond(route, handler(request, *ids))
                allowed.append(route.method)
            if allowed:
                raise ApiError(
                    405,
                    "method_not_allowed",
                    f"{request.path} takes {', '.join(sorted(allowed))}, not {request.method}",
                    allow=", ".join(sorted(set(allowed))),
                )
            template = "other"
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
            return template, response

    def _served(self) -> Served:
        served = self.ctx.serving.current
        if served is None:
            raise ApiError(503, "not_ready", "no version is loaded yet; try again in a moment")
        return served

    # -- one method per route (routes.py names them) ----------------------------------------

    def version(self, request: Request) -> Response:
        served = self._served()
        cached = self._version_body
        if cached[0] is not served:  # a version is immutable: encode its answer once
            manifest = served.manifest
            body = bodies.CurrentVersion(
                version=served.number,
                parent=msgspec.convert(manifest.get("parent"), int | None),
                created_at=msgspec.convert(manifest.get("created_at"), float | None),
                labels=msgspec.convert(manifest.get("labels", []), list[str]),
                sample_count=msgspec.convert(manifest.get("sample_count", 0), int),
            )
            cached = self._version_body = (served, bodies.encode(body))
        return Response(200, cached[1])

    def status(self, request: Request) -> bodies.Status:
        return reads.status(self.ctx)

    def update(self, request: Request) -> Answer:
        query = read_query(request, bodies.UpdateQuery)
        asked = update_request(request)
        updater = self.ctx.updater
        try:
            accepted = updater.request(asked, from_base=asked.from_ == "base", deferred=query.defer)
        except BadParameters as exc:
            raise ApiError(422, "bad_parameter", str(exc)) from exc
        except ParametersDiffer as exc:
            raise ApiError(409, "parameters_differ", str(exc)) from exc
        except NothingQueued as exc:
            raise ApiError(409, "nothing_queued", str(exc)) from exc
        if not query.defer:  # deferred: the pending row waits for the policy's conditions
            self.ctx.requested()
        if not query.wait:
            return accepted

        def respond(info: bodies.UpdateInfo) -> Response:
            # Still running after ``timeout``: 202, as without waiting.
            return Response(202 if info.active else 200, bodies.encode(info))

        return self._wait(accepted.id, query.timeout, respond)

    def forget(self, request: Request) -> bodies.ForgetResult:
        asked = _decoded(request, bodies.ForgetRequest, "POST /v1/forget")
        if self.ctx.forget is None:
            raise ApiError(409, "conflict", "this daemon cannot forget; restart it")
        try:
            return self.ctx.forget(asked)
        except NothingToForget as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        except (ForgetRefused, ForgetFailed) as exc:
            raise ApiError(409, "conflict", str(exc)) from exc

    def update_info(self, request: Request, update_id: int) -> Answer:
        query = read_query(request, bodies.UpdateQuery)
        info = self.ctx.updater.describe(update_id)
        if info is None:
            raise ApiError(
                404, "not_found", f"there is no update {update_id}; see /v1/status for the last one"
            )
        if not query.wait or not info.active:
            return info
        return self._wait(update_id, query.timeout, lambda info: Response(200, bodies.encode(info)))

    def _wait(
        self, update_id: int, timeout: float, respond: Callable[[bodies.UpdateInfo], Response]
    ) -> Response:
        """The update's end, waited for on the server's loop (``waits.py``), not here."""
        waiter = UpdateWait(self.ctx.updater, self.ctx.events, update_id, timeout, respond)
        info = self.ctx.updater.describe(update_id)  # after listening: no end slips between
        if info is not None and not info.active:
            waiter.close()
            return respond(info)
        return Response(202, b"", deferred=waiter)

    def cancel(self, request: Request, update_id: int) -> bodies.UpdateInfo:
        try:
            return cancel(self.ctx.updater, update_id, who(request.peer))
        except NoSuchUpdate as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        except NotCancellable as exc:
            raise ApiError(409, "conflict", str(exc)) from exc

    def versions(self, request: Request) -> bodies.VersionList:
        return bodies.VersionList(self.ctx.history.listing())

    def version_info(self, request: Request, number: int) -> bodies.VersionDetail:
        info = self.ctx.history.detail(number)
        if info is None:
            raise ApiError(
                404, "not_found", f"there is no version {number}; list them at /v1/versions"
            )
        return info

    def samples(self, request: Request) -> bodies.SamplePage:
        return reads.samples(self.ctx, read_query(request, bodies.SamplesQuery))

    def add_samples(self, request: Request) -> bodies.AddedSamples:
        return add_samples(self.ctx, request)

    def requeue(self, request: Request) -> bodies.RequeueResult:
        return steer.requeue(self.ctx, request)

    def predict(self, request: Request) -> bodies.Predictions:
        return predict(self._served(), request)

    def events(self, request: Request) -> Response:
        subscription = self.ctx.events.subscribe()

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

    def metrics(self, request: Request) -> Response:
        metrics = self.ctx.metrics
        if metrics is None:
            raise ApiError(503, "not_ready", "metrics are not set up yet; try again in a moment")
        body, content_type = metrics.render()
        return Response(200, body, content_type)

    def openapi(self, request: Request) -> Response:
        return Response(200, msgspec.json.encode(openapi_document()) + b"\n")

    def rollback(self, request: Request) -> bodies.RollbackResult:
        """``{"version": N}`` makes N current again; no body rolls back to the parent."""
        number = _body(request, bodies.RollbackRequest, bodies.RollbackRequest()).version
        return _history_call(lambda: self.ctx.history.rollback(number))

    def pin(self, request: Request) -> bodies.PinResult:
        number = _body(request, bodies.VersionRequest).version
        return _history_call(lambda: self.ctx.history.pin(number, True))

    def unpin(self, request: Request) -> bodies.PinResult:
        number = _body(request, bodies.VersionRequest).version
        return _history_call(lambda: self.ctx.history.pin(number, False))

    def import_base(self, request: Request) -> bodies.ImportResult:
        """The body is a .safetensors file (never a path: the daemon opens no caller's files)."""
        if not request.body:
            raise ApiError(422, "bad_input", "send the .safetensors file as the request body")
        return _history_call(lambda: self.ctx.history.import_base(request.body))


def error_response(status: int, code: str, message: str) -> Response:
    return Response(status, bodies.encode(bodies.ErrorBody(bodies.ErrorDetail(code, message))))


def _respond(route: Route, answer: Answer) -> Response:
    if isinstance(answer, Response):
        return answer
    return Response(route.status, bodies.encode(answer))


def _whole_number(template: str, value: str) -> int:
    number = whole_number(value, digits=18)  # below MAX_ID, as the document says
    if number is None:
        raise ApiError(
            400, "bad_parameter", f"{template}: {value!r} is not an id; ids are whole numbers"
        )
    return number


def _body(request: Request, kind: type[S], empty: S | None = None) -> S:
    """The JSON body as ``kind``; ``empty`` stands for no body (else one is required)."""
    if empty is not None and not request.body.strip():
        return empty
    try:
        # JSON Schema's integer includes 3.0, so the document allows {"version": 3.0}: whole
        # floats become integers before the struct is checked (strictly otherwise).
        return msgspec.convert(whole_floats(msgspec.json.decode(request.body)), kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "bad_input", 'send {"version": N} with N a version number') from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from exc


def _decoded(request: Request, kind: type[S], route: str) -> S:
    """The JSON body as ``kind``; a 422 names the field that does not fit."""
    try:
        return msgspec.convert(whole_floats(msgspec.json.decode(request.body)), kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "bad_input", f"{exc}; see {route} in docs/api.md") from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from exc


def _history_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except VersionNotFound as exc:
        raise ApiError(404, "version_not_found", str(exc)) from exc
    except LoadFailed as exc:
        raise ApiError(409, "load_failed", f"{exc}; the current version keeps serving") from exc
    except HistoryError as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
