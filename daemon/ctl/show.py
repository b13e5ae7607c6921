"""Terminal output that shows every character it was given, and nothing it was not.

Labels, file names, reasons and error messages come from the daemon or the user. rich reads
``[...]`` as a style tag (``[versions]`` vanished from messages) and a terminal obeys escape
sequences (a label holding ``\\x1b[2J`` cleared the screen), so each such string goes through
:func:`safe` (control characters spelled out, then markup escaped) before rich renders it, or
:func:`plain` before it is written without rich.

rich costs tens of milliseconds to import: the consoles are made on first use, so commands
that print a line (``version``, errors) never load it.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

_SPELLED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
# C0 and C1 control characters, and the bidirectional overrides that reorder what follows.
_CONTROL = [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_TRANSLATION = {c: _SPELLED.get(c, f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _CONTROL}


def plain(value: object) -> str:
    """``value`` as text with its control characters written as escapes (``\\x1b``)."""
    return str(value).translate(_TRANSLATION)


def safe(value: object) -> str:
    """``value`` as rich markup that renders as exactly its text (see :func:`plain`),
    alone or followed by more markup."""
    from rich.markup import escape

    text = plain(value)
    body = text.rstrip("\\")
    # rich reads n backslashes before a tag as n // 2 backslashes (and the tag as text when n
    # is odd), and takes backslashes as they are anywhere else. Its escape() doubles a
    # trailing one for the tag that may follow, which shows two when none does: so trailing
    # backslashes are doubled here and always followed by a tag, one that styles nothing.
    tail = len(text) - len(body)
    return escape(body) + ("\\" * 2 * tail + "[none][/none]" if tail else "")


@cache
def out() -> Console:
    from rich.console import Console

    return Console()


@cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def line(text: str) -> None:
    """Write one line of our own (already plain) text to stdout, without rich."""
    sys.stdout.write(text + "\n")


def error_line(message: object) -> None:
    """``tailorctl: <message>`` on one line of stderr; red on a terminal unless NO_COLOR."""
    text = f"tailorctl: {plain(message)}"
    if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        text = f"\x1b[31m{text}\x1b[0m"
    sys.stderr.write(text + "\n")
