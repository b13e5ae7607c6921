"""The socket API's error type and its query-parameter readers."""

from __future__ import annotations

import math

from tailord.daemon.http.wire import Request


class ApiError(Exception):
    """A request the API refuses: answered as ``{"error": {"code", "message"}}`` with
    ``status``; the message says what to do instead."""

    def __init__(self, status: int, code: str, message: str, *, allow: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.allow = allow


def text_param(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, "bad_parameter", f"give ?{name}= once")
    return values[0]


def int_param(
    request: Request, name: str, default: int | None, minimum: int, maximum: int
) -> int | None:
    text = text_param(request, name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not minimum <= int(text) <= maximum:
        raise ApiError(
            400, "bad_parameter", f"?{name}= takes a whole number from {minimum} to {maximum}"
        )
    return int(text)


def number_param(
    request: Request, name: str, default: float, minimum: float, maximum: float
) -> float:
    text = text_param(request, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not minimum <= value <= maximum:  # NaN fails too
        raise ApiError(
            400,
            "bad_parameter",
            f"?{name}= takes seconds, a number from {minimum:g} to {maximum:g}",
        )
    return value


def bool_param(request: Request, name: str) -> bool:
    text = text_param(request, name)
    if text is None:
        return False
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ApiError(400, "bad_parameter", f"?{name}= takes true or false")
