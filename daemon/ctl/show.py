"""Terminal output that shows every character it was given, and nothing it was not.

Labels, file names, reasons and error messages come from the daemon or the user. rich reads
``[...]`` as a style tag (``[versions]`` vanished from messages) and a terminal obeys escape
sequences (a label holding ``\\x1b[2J`` cleared the screen), so each such string goes through
:func:`safe` (control characters spelled out, then markup escaped) before rich renders it, or
:func:`plain` before it is written without rich. The spelling is the daemon's log lines' own
(``daemon/text.py``).

rich costs tens of milliseconds to import: the consoles are made on first use, so commands
that print a line (``version``, errors) never load it.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING

from tailord.daemon.text import escape

if TYPE_CHECKING:
    from rich.console import Console


def plain(value: object) -> str:
    """``value`` as text with its control characters written as escapes (``\\x1b``)."""
    return escape(value)


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
