"""The socket API's routes: ``/v1/...`` requests in, JSON out.

Errors are ``{"error": {"code": ..., "message": ...}}`` with a fitting status; the message
says what to do. Parameters are ids, never paths.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from tailord.daemon.history import HistoryError
from tailord.daemon.server import Request, Response, error_response, json_response
from tailord.daemon.serving import LoadFailed, Served
from tailord.storage.errors import VersionNotFound
from tailord.trainer.errors import DecodeError, ModelError
from tailord.trainer.inputs import decode_vector

logger = logging.getLogger(__name__)

MAX_INPUTS = 4096


class Backend(Protocol):
    """What the API needs from the running daemon."""

    def served(self) -> Served | None: ...
    def status(self) -> dict[str, Any]: ...
    def request_update(self) -> dict[str, Any]: ...
    def rollback(self, number: int | None) -> dict[str, Any]: ...
    def pin(self, number: int, pinned: bool) -> dict[str, Any]: ...
    def import_base(self, data: bytes) -> dict[str, Any]: ...


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Api:
    """Routes requests to handlers; an instance is the server's ``App``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/v1/version"): self.version,
            ("GET", "/v1/status"): self.status,
            ("POST", "/v1/predict"): self.predict,
            ("POST", "/v1/update"): self.update,
            ("POST", "/v1/rollback"): self.rollback,
            ("POST", "/v1/pin"): self.pin,
            ("POST", "/v1/unpin"): self.unpin,
            ("POST", "/v1/import-base"): self.import_base,
        }

    def __call__(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        handler = self.routes.get((method, request.path))
        try:
            if handler is None:
                allowed = sorted(m for m, p in self.routes if p == request.path)
                if allowed:
                    raise ApiError(
                        405,
                        "method_not_allowed",
                        f"{request.path} takes {', '.join(allowed)}, not {request.method}",
                    )
                raise ApiError(
                    404, "not_found", f"no endpoint {request.path}; the API lives under /v1/"
                )
            return handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message)
            if exc.status == 405:
                methods = sorted(m for m, p in self.routes if p == request.path)
                response.headers["Allow"] = ", ".join(methods)
            return response

    def _served(self) -> Served:
        served = self.backend.served()
        if served is None:
            raise ApiError(503, "not_ready", "no version is loaded yet; try again in a moment")
        return served

    def version(self, request: Request) -> Response:
        served = self._served()
        manifest = served.manifest
        return json_response(
            200,
            {
                "version": served.number,
                "parent": manifest.get("parent"),
                "created_at": manifest.get("created_at"),
                "labels": manifest.get("labels", []),
                "sample_count": manifest.get("sample_count", 0),
            },
        )

    def status(self, request: Request) -> Response:
        return json_response(200, self.backend.status())

    def update(self, request: Request) -> Response:
        return json_response(202, self.backend.request_update())

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

    def predict(self, request: Request) -> Response:
        served = self._served()  # one reference for the whole request, even across a swap
        x = self._inputs(request)
        try:
            predictions = served.model.predict(x)
        except ModelError as exc:
            status = 409 if not served.model.labels else 422
            raise ApiError(status, "cannot_predict", str(exc)) from exc
        return json_response(
            200,
            {
                "version": served.number,
                "predictions": [{"label": p.label, "score": p.score} for p in predictions],
            },
        )

    def _inputs(self, request: Request) -> np.ndarray:
        content_type = request.headers.get("content-type", "application/json").split(";")[0]
        if content_type in ("application/x-npy", "application/octet-stream"):
            try:
                return decode_vector(request.body, ".npy")[np.newaxis, :]
            except DecodeError as exc:
                raise ApiError(422, "bad_input", str(exc)) from exc
        if content_type != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                f'cannot read {content_type}; send JSON {{"inputs": [[...], ...]}} '
                "or one .npy file as application/x-npy",
            )
        try:
            payload = json.loads(request.body or b"null")
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, "bad_json", "the body is not valid JSON") from exc
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        if not isinstance(inputs, list) or not inputs:
            raise ApiError(
                422, "bad_input", 'send {"inputs": [[0.1, 0.2, ...], ...]}: a non-empty list'
            )
        if len(inputs) > MAX_INPUTS:
            raise ApiError(
                413, "too_many_inputs", f"{len(inputs)} inputs; send at most {MAX_INPUTS}"
            )
        rows = []
        for i, row in enumerate(inputs):
            if not isinstance(row, list) or not row or not all(_is_number(v) for v in row):
                raise ApiError(422, "bad_input", f"inputs[{i}] is not a list of numbers")
            rows.append(row)
        if len({len(r) for r in rows}) != 1:
            raise ApiError(422, "bad_input", "all inputs must have the same length")
        return np.asarray(rows, dtype=np.float32)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _version_in(request: Request, *, required: bool) -> int | None:
    try:
        payload = json.loads(request.body) if request.body.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from exc
    number = payload.get("version") if isinstance(payload, dict) else None
    if number is None and not required:
        return None
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise ApiError(422, "bad_input", 'send {"version": N} with N a version number')
    return number


def _history_call(call: Callable[[], dict[str, Any]]) -> Response:
    try:
        return json_response(200, call())
    except VersionNotFound as exc:
        raise ApiError(404, "version_not_found", str(exc)) from exc
    except LoadFailed as exc:
        raise ApiError(409, "load_failed", f"{exc}; the current version keeps serving") from exc
    except HistoryError as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
