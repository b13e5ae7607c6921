"""The socket API's error type and its query-parameter readers."""

from __future__ import annotations

import functools
import math
from typing import TypeVar

import msgspec
import msgspec.inspect as mi

from tailord.daemon.http.wire import Request

Q = TypeVar("Q", bound=msgspec.Struct)


class ApiError(Exception):
    """A request the API refuses: answered as ``{"error": {"code", "message"}}`` with
    ``status``; the message says what to do instead.

    Not a :class:`TailordError`: it is an answer the router sends, never an error that
    reaches a person as tailord's own, and it needs its status and code to be one."""

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
    value = whole_number(text)
    if value is None or not minimum <= value <= maximum:
        raise ApiError(
            400, "bad_parameter", f"?{name}= takes a whole number from {minimum} to {maximum}"
        )
    return value


def whole_number(text: str, digits: int = 19) -> int | None:
    """``text`` as a whole number (``129`` or, as JSON Schema's integer allows, ``129.0``),
    of at most ``digits`` digits; None if it is not one."""
    whole, dot, fraction = text.partition(".")
    if dot and (not fraction or fraction.strip("0")):
        return None
    if not whole.isascii() or not whole.isdigit() or len(whole) > digits:
        return None
    return int(whole)


def whole_floats(value: object) -> object:
    """A decoded JSON value with every whole-number float as an int: JSON Schema's integer
    includes 3.0, so a document that says integer allows it (strict structs refuse it)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_floats(v) for v in value]
    return value


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


def read_query(request: Request, kind: type[Q]) -> Q:
    """The query parameters as ``kind`` (a ``bodies`` query struct): each field read by its
    type, checked against its bounds, defaulted when absent. Unknown parameters are ignored."""
    info = _query_fields(kind)
    values: dict[str, object] = {}
    for name, field_type, default in info:
        values[name] = _read(request, name, field_type, default)
    return kind(**values)


@functools.cache
def _query_fields(kind: type[msgspec.Struct]) -> list[tuple[str, mi.Type, object]]:
    info = mi.type_info(kind)
    assert isinstance(info, mi.StructType)
    return [(f.encode_name, f.type, f.default) for f in info.fields]


def _read(request: Request, name: str, kind: mi.Type, default: object) -> object:
    kind = _unwrapped(kind)
    if isinstance(kind, mi.UnionType):  # ``X | None``: absent is the default
        (kind,) = (_unwrapped(t) for t in kind.types if not isinstance(t, mi.NoneType))
    if isinstance(kind, mi.BoolType):
        return bool_param(request, name) if default is False else _fail(name, kind)
    if isinstance(kind, mi.IntType):
        low, high = _bounds(kind)
        return int_param(request, name, _optional_int(default), int(low), int(high))
    if isinstance(kind, mi.FloatType):
        low, high = _bounds(kind)
        assert isinstance(default, float)
        return number_param(request, name, default, low, high)
    if isinstance(kind, mi.LiteralType):
        text = text_param(request, name)
        if text is not None and text not in kind.values:
            choices = ", ".join(str(v) for v in kind.values)
            raise ApiError(400, "bad_parameter", f"?{name}= takes one of {choices}")
        return default if text is None else text
    if isinstance(kind, mi.StrType):
        text = text_param(request, name)
        return default if text is None else text
    return _fail(name, kind)


def _unwrapped(kind: mi.Type) -> mi.Type:
    return kind.type if isinstance(kind, mi.Metadata) else kind  # a description beside it


def _bounds(kind: mi.IntType | mi.FloatType) -> tuple[float, float]:
    low = kind.ge if kind.ge is not None else kind.gt
    high = kind.le if kind.le is not None else kind.lt
    if low is None or high is None:
        raise TypeError("query numbers are bounded: give them ge= and le= in bodies.py")
    return low, high


def _optional_int(default: object) -> int | None:
    assert default is None or isinstance(default, int)
    return default


def _fail(name: str, kind: mi.Type) -> object:
    raise TypeError(f"?{name}: query parameters of type {kind} are not supported")
