"""Tables (TOML, JSON) to typed msgspec structs, with errors a person can act on.

The structs declare their rules on their fields (types, ``Literal`` choices, ``msgspec.Meta``
bounds), and ``msgspec.convert`` checks them. Its messages name a JSON path and a type
("Expected `int` >= 1 - at `$.k`"); :func:`convert` turns them into what the person edits:
the section, the key, the value they wrote, what it must be and an example that works
("[model] k = 0: must be an integer >= 1; for example k = 5").

No torch or numpy here: the daemon's config loader, and so ``tailord --help``, import this.
"""

from __future__ import annotations

import json
import math
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from tailord.trainer.errors import ModelError

S = TypeVar("S", bound=msgspec.Struct)

# "Expected `int` >= 1, got `str` - at `$.policy.k[2]`", each part but the first optional.
_EXPECTED = re.compile(
    r"Expected `(?P<want>[^`]+)`(?P<bound>[^,]*?)(?:, got `(?P<got>[^`]+)`)?"
    r"(?: - at `\$(?P<path>[^`]*)`)?$"
)
_ENUM = re.compile(r"Invalid enum value .*?(?: - at `\$(?P<path>[^`]*)`)?$")
_UNKNOWN = re.compile(
    r"Object contains unknown field `(?P<key>[^`]+)`(?: - at `\$(?P<path>[^`]*)`)?$"
)
_ANY = re.compile(r"(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_NOUNS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
    "null": "unset",
}


def convert(
    cls: type[S],
    table: Mapping[str, Any],
    section: str | None,
    *,
    error: type[Exception] = ModelError,
    dec_hook: Callable[[type, Any], Any] | None = None,
) -> S:
    """``table`` as a ``cls``, or ``error`` naming ``[section] key = value``, the rule, an example.

    ``section`` is None for the top level of a file whose sections are nested structs.
    """
    _refuse_non_finite(table, section, error)
    try:
        return msgspec.convert(dict(table), cls, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise error(explain(str(exc), cls, table, section)) from None


def explain(
    message: str, cls: type[msgspec.Struct], table: Mapping[str, Any], section: str | None
) -> str:
    """msgspec's ``message`` about ``table`` (converted to ``cls``) in a person's words."""
    unknown = _UNKNOWN.match(message)
    if unknown:
        owner, where, _ = _walk(cls, table, section, _keys(unknown["path"]), into_last=True)
        known = ", ".join(f.name for f in msgspec.structs.fields(owner))
        return (
            f"unknown {'key' if where else 'section or key'} {unknown['key']!r}"
            f"{' in ' + where if where else ''}; "
            f"check its spelling, or remove it (known keys: {known})"
        )
    expected, enum = _EXPECTED.match(message), _ENUM.match(message)
    found = expected or enum or _ANY.match(message)
    assert found is not None  # _ANY matches every string
    keys = _keys(found["path"])
    owner, where, value = _walk(cls, table, section, keys)
    key = next((k for k in reversed(keys) if isinstance(k, str)), "")
    # A field renamed on the wire (``from_`` as "from") is named in messages by its wire name.
    field = next((f for f in msgspec.structs.fields(owner) if key in (f.name, f.encode_name)), None)
    subject = f"{where + ' ' if where else ''}{key} = {_toml(value)}"
    if expected:
        rule = _NOUNS.get(expected["want"], f"a {expected['want']}") + expected["bound"]
        got = expected["got"]
        rule += f", not {_NOUNS.get(got, got)}" if got else ""
        rule = f"must be {rule}"
        if field is not None and _struct_of(owner, key) is not None:
            rule += f" (write its keys under a [{key}] line)"
    elif enum and field is not None:
        rule = "must be one of " + ", ".join(_toml(c) for c in _choices(field.type))
    elif enum:  # choices the struct does not list (a field we could not find): msgspec's words
        rule = message.split(" - at ", maxsplit=1)[0]
    else:
        rule = found["text"]
    example = _example(owner, field)
    return f"{subject}: {rule}" + (f"; for example {key} = {example}" if example else "")


def _keys(path: str | None) -> list[str | int]:
    """``.policy.k[2]`` as ``["policy", "k", 2]``."""
    return [
        int(index) if index else name
        for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path or "")
    ]


def _walk(
    cls: type[msgspec.Struct],
    table: Mapping[str, Any],
    section: str | None,
    keys: list[str | int],
    *,
    into_last: bool = False,
) -> tuple[type[msgspec.Struct], str, object]:
    """The struct that owns the last key of ``keys`` (or is it, ``into_last``), its
    ``[section]``, and the value there."""
    owner, where, value = cls, f"[{section}]" if section else "", object()
    current: object = table
    for position, key in enumerate(keys):
        if isinstance(key, int):
            break  # a list's item: show the whole list, the person edits that line
        current = current.get(key) if isinstance(current, Mapping) else None
        value = current
        nested = _struct_of(owner, key)
        if nested is not None and (into_last or position < len(keys) - 1):
            owner, where = nested, f"[{key}]"
    if not keys:
        value = table
    return owner, where, value


def _struct_of(owner: type[msgspec.Struct], key: str) -> type[msgspec.Struct] | None:
    for field in msgspec.structs.fields(owner):
        if (
            field.name == key
            and isinstance(field.type, type)
            and issubclass(field.type, msgspec.Struct)
        ):
            return field.type
    return None


def _choices(annotation: object) -> tuple[object, ...]:
    """The values a ``Literal`` field (maybe inside Annotated or Optional) takes."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return tuple(c for arg in typing.get_args(annotation) for c in _choices(arg))


def _example(owner: type[msgspec.Struct], field: msgspec.structs.FieldInfo | None) -> str:
    """A value that works: the struct's ``examples`` entry, else the field's default."""
    if field is None:
        return ""
    examples: Mapping[str, str] = getattr(owner, "examples", {})
    if field.name in examples:
        return examples[field.name]
    default = field.default
    if default is msgspec.NODEFAULT and field.default_factory is not msgspec.NODEFAULT:
        default = field.default_factory()
    if default in (msgspec.NODEFAULT, msgspec.UNSET, None) or isinstance(default, msgspec.Struct):
        return ""
    return _toml(default)


def _toml(value: object) -> str:
    """``value`` as it is written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value) if isinstance(value, int | float) else repr(value)


def _refuse_non_finite(
    table: Mapping[str, Any], section: str | None, error: type[Exception]
) -> None:
    # TOML has inf and nan; no key of ours means anything by them, and inf slips past a
    # ``gt=0`` bound (nan fails every bound already, with a less direct message).
    for key, value in table.items():
        if isinstance(value, Mapping):
            _refuse_non_finite(value, key if section is None else section, error)
        elif isinstance(value, float) and not math.isfinite(value):
            where = f"[{section}] " if section else ""
            raise error(f"{where}{key} = {value}: must be a finite number")
