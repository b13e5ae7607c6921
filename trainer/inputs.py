"""Decode untrusted sample bytes from the inbox and the socket: which kind a file or a
JSON record holds, checked against the model's input kind and the limits.

Each kind is decoded by its own module (vectors.py, texts.py, images.py), which treats its
input as hostile: checked for what it claims to be before its payload is read, and never
unpickled. A ``.jsonl`` line of numbers takes a faster path to the same bytes.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import NamedTuple

from tailord.trainer.errors import DecodeError
from tailord.trainer.images import MAX_PIXELS, decode_base64_image, decode_image
from tailord.trainer.targets import json_target
from tailord.trainer.texts import MAX_TEXT_CHARS, decode_text, text_payload
from tailord.trainer.vectors import (
    MAX_VALUES,
    decode_vector,
    json_vector,
    parse_json,
    vector_to_bytes,
)

INPUT_KINDS: frozenset[str] = frozenset({"vector", "text", "image"})
# Suffix → the kind of sample it holds; ``.json`` may hold a vector or a text (see decode_record).
SAMPLE_SUFFIXES: dict[str, str] = {
    ".npy": "vector",
    ".json": "vector",
    ".txt": "text",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
}
RECORD_KEYS = ("vector", "text", "image")


@dataclass(frozen=True)
class Limits:
    """How big an untrusted sample may be, whatever its kind."""

    max_values: int = MAX_VALUES  # numbers in one vector
    max_text_chars: int = MAX_TEXT_CHARS  # characters in one text, after normalization
    max_pixels: int = MAX_PIXELS  # width times height of one image


class Decoded(NamedTuple):
    """A validated sample in its canonical stored form; its sha256 is the sample's identity.

    ``payload`` is float32 little-endian bytes for a vector, NFC-normalized UTF-8 for a text,
    and the original, fully decoded once, file bytes for an image.
    """

    kind: str
    payload: bytes


def decode_sample(
    data: bytes, suffix: str, input_kind: str, limits: Limits | None = None
) -> Decoded:
    """Validate a sample file's bytes for a model taking ``input_kind`` inputs.

    ``suffix`` is the file name's suffix, any case. Raises DecodeError with a one-line reason
    (what is wrong; what to do), including when the sample is of the wrong kind for the model.
    """
    limits = limits or Limits()
    _check_input_kind(input_kind)
    ext = suffix.lower()
    kind = SAMPLE_SUFFIXES.get(ext)
    if kind is None:
        raise DecodeError(
            f"the suffix {suffix!r} is not a sample format; use one of "
            f"{', '.join(sorted(SAMPLE_SUFFIXES))} (or a .jsonl batch at the inbox's top level)"
        )
    if not data:
        raise DecodeError("the file is empty; write the whole sample, then move it into the inbox")
    if ext == ".json":
        return decode_record(parse_json(data), input_kind, limits)
    _require(kind, input_kind)
    if kind == "vector":
        return Decoded(
            "vector", vector_to_bytes(decode_vector(data, ext, max_values=limits.max_values))
        )
    if kind == "text":
        return Decoded("text", decode_text(data, limits.max_text_chars))
    return Decoded("image", decode_image(data, limits.max_pixels))


def decode_line(
    line: bytes, input_kind: str, limits: Limits | None = None, *, task: str = "classify"
) -> tuple[str, Decoded]:
    """Validate one ``.jsonl`` line: a JSON object with a ``label`` string and one input.

    Returns the label as written (the caller decides which labels are usable) and the sample.
    For ``task = "regress"`` the line has a ``target`` number instead, returned as its
    canonical text (see targets.py).
    """
    limits = limits or Limits()
    record = parse_json(line)
    if not isinstance(record, dict):
        key = '"target": 3.25' if task == "regress" else '"label": "..."'
        raise DecodeError(f'the line is not a JSON object; write {{{key}, "vector": [...]}}')
    label = json_target(record) if task == "regress" else record.get("label")
    if not isinstance(label, str):
        raise DecodeError('the line has no "label" string; add "label": "<name>"')
    if input_kind == "vector":
        payload = _plain_vector(record, line, limits.max_values)
        if payload is not None:
            return label, Decoded("vector", payload)
    return label, decode_record(record, input_kind, limits)


def _plain_vector(record: dict[str, object], line: bytes, max_values: int) -> bytes | None:
    """The payload of a well-formed vector record, or None to take the checked path (which
    says what is wrong). The same checks and bytes as the checked path, with less overhead:
    this is most of the time of a big .jsonl batch.

    ``struct`` packs the list into little-endian float32 in one C pass, refusing every
    element that is not a number (strings, null, lists) and every value that is not finite
    once rounded to float32, which is the checked path's rule; it is three times faster
    than going through a float64 array. Booleans, which it would take as 0 and 1, cannot be
    in a line without a ``true`` or ``false`` literal; most lines have no ``u`` nor ``s``
    byte at all, which ``memchr`` tells at once, whereas the substring search costs about
    half as much as the parse.
    """
    value = record.get("vector")
    if type(value) is not list or not 0 < len(value) <= max_values:
        return None
    if "text" in record or "image" in record or _may_hold_booleans(line):
        return None
    try:
        return _float32_packer(len(value)).pack(*value)
    except (struct.error, OverflowError):
        return None


@functools.lru_cache(maxsize=8)  # a model takes one size of vector
def _float32_packer(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}f")


def _may_hold_booleans(line: bytes) -> bool:
    return (b"u" in line or b"s" in line) and (b"true" in line or b"false" in line)


def decode_record(document: object, input_kind: str, limits: Limits | None = None) -> Decoded:
    """Validate a parsed JSON sample: a list of numbers, or an object with exactly one of
    ``vector`` (numbers), ``text`` (a string) or ``image`` (base64 PNG/JPEG bytes).

    Other keys (``label``, a note) are ignored here.
    """
    limits = limits or Limits()
    _check_input_kind(input_kind)
    if isinstance(document, list):
        document = {"vector": document}
    if not isinstance(document, dict):
        raise DecodeError(
            f"the JSON holds a {type(document).__name__}; write a list of numbers or an object "
            'with one of "vector", "text" or "image"'
        )
    present = [key for key in RECORD_KEYS if key in document]
    if len(present) != 1:
        raise DecodeError(
            f"the JSON object has {'none' if not present else ' and '.join(present)} of "
            '"vector", "text", "image"; give exactly one input per sample'
        )
    kind = present[0]
    _require(kind, input_kind)
    value = document[kind]
    if kind == "vector":
        return Decoded("vector", vector_to_bytes(json_vector(value, limits.max_values)))
    if not isinstance(value, str):
        raise DecodeError(
            f'"{kind}" holds a {type(value).__name__}, not a string; '
            + ("write the text as a JSON string" if kind == "text" else "base64-encode the image")
        )
    if kind == "text":
        return Decoded("text", text_payload(value, limits.max_text_chars))
    return Decoded("image", decode_base64_image(value, limits.max_pixels))


def _check_input_kind(input_kind: str) -> None:
    if input_kind not in INPUT_KINDS:
        raise DecodeError(
            f"input kind {input_kind!r} is unknown; use one of {', '.join(sorted(INPUT_KINDS))}"
        )


def _require(kind: str, input_kind: str) -> None:
    if kind != input_kind:
        accepted = ", ".join(sorted(s for s, k in SAMPLE_SUFFIXES.items() if k == input_kind))
        raise DecodeError(
            f"this is a {kind} sample but the model takes {input_kind} inputs; "
            f'send {input_kind} samples ({accepted}, or JSON with a "{input_kind}" key)'
        )
