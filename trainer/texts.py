"""Texts from untrusted bytes: UTF-8 checked, normalized, stored as the canonical payload."""

from __future__ import annotations

import unicodedata

from tailord.trainer.errors import DecodeError

MAX_TEXT_CHARS = 100_000


def decode_text(data: bytes, max_chars: int = MAX_TEXT_CHARS) -> bytes:
    """Return UTF-8 file bytes as the canonical stored text (see :func:`text_payload`)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"the text is not valid UTF-8 (byte {exc.start} is 0x{data[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from exc
    return text_payload(text.removeprefix("\ufeff"), max_chars)


def text_payload(text: str, max_chars: int = MAX_TEXT_CHARS) -> bytes:
    """Return a text (a file's, or a JSON string) as its canonical stored payload: NFC,
    without trailing line breaks, UTF-8; refused when empty, binary or too long."""
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
