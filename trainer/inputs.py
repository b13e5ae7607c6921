"""Decode untrusted sample bytes from the inbox: vectors, texts and images.

Everything here treats its input as hostile: a file is checked for what it claims to be
before any of its payload is read, and nothing is ever unpickled.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import logging
import struct
import unicodedata
import warnings
from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from tailord.trainer.errors import DecodeError, one_line
from tailord.trainer.targets import json_target
from tailord.trainer.vectors import (
    MAX_VALUES,
    decode_vector,
    json_vector,
    parse_json,
    vector_to_bytes,
)

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 100_000
MAX_PIXELS = 40_000_000  # a 48-megapixel photo is over: downscale before dropping it in
MAX_IMAGE_BYTES = 64 * 1024 * 1024

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
IMAGE_FORMATS = ("PNG", "JPEG")


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
        return Decoded("text", _check_text(value, limits.max_text_chars))
    # base64 is 4/3 of the bytes: refuse an oversized string before decoding it.
    if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise DecodeError(
            f"the base64 image is over {MAX_IMAGE_BYTES} bytes; shrink it or drop it as a file"
        )
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(
            f'"image" is not valid base64 ({one_line(exc)}); encode the file bytes with base64'
        ) from exc
    return Decoded("image", decode_image(raw, limits.max_pixels))


def decode_text(data: bytes, max_chars: int = MAX_TEXT_CHARS) -> bytes:
    """Return UTF-8 file bytes as the canonical stored text (see :func:`_check_text`)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"the text is not valid UTF-8 (byte {exc.start} is 0x{data[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from exc
    return _check_text(text.removeprefix("\ufeff"), max_chars)


def _check_text(text: str, max_chars: int) -> bytes:
    # NFC so that the same words typed on two keyboards are one sample; trailing line breaks
    # are how files end, not part of the text.
    text = unicodedata.normalize("NFC", text).rstrip("\r\n")
    if not text.strip():
        raise DecodeError("the text is empty; write at least one word")
    if "\x00" in text:
        raise DecodeError("the text holds a NUL character; send plain UTF-8 text, not a binary")
    if len(text) > max_chars:
        raise DecodeError(
            f"the text has {len(text)} characters, more than the limit of {max_chars}; "
            "split it into several samples or raise [ingest] max_text_chars"
        )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from a JSON \ud800 escape
        raise DecodeError(
            "the text holds an unpaired surrogate escape; send valid Unicode text"
        ) from exc


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> bytes:
    """Check that ``data`` is a whole PNG or JPEG within the pixel cap; return it unchanged.

    Only Pillow's PNG and JPEG decoders are allowed, the size is checked from the header
    before any pixel is decoded, and the image is then decoded once so a truncated or
    corrupt file is refused here rather than in an update.
    """
    if not data:
        raise DecodeError("the image is empty; write the whole file, then move it into the inbox")
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own limit; a bomb is an error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise DecodeError(
                        f"the image is {width}x{height} = {width * height} pixels, over the cap "
                        f"of {max_pixels}; downscale it or raise [ingest] max_image_pixels"
                    )
                if width == 0 or height == 0:
                    raise DecodeError("the image has no pixels; save a non-empty image")
                image.verify()  # PNG: every chunk's CRC, through to the end marker
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                image.load()  # every pixel decodes (verify() leaves the image unusable)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(
            f"the image is a decompression bomb ({one_line(exc)}); send a smaller image"
        ) from exc
    except UnidentifiedImageError as exc:
        raise DecodeError(
            "the bytes are not a PNG or JPEG image; convert the image to PNG or JPEG"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError) as exc:
        raise DecodeError(
            f"the image cannot be decoded ({one_line(exc)}); "
            "write the whole file, then move it into the inbox"
        ) from exc
    return data


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
