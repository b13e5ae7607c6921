"""Text from outside, made safe to show: control characters written as escapes.

Labels, file names and reasons come from whoever writes the inbox, and messages from the
daemon or the user. Written as they are, a file named ``a\\nERROR forged.npy`` forges a
line in the daemon's log, and ``\\x1b[2J`` clears the terminal of whoever reads it. Every
such string goes through :func:`escape` before it reaches a log line or a terminal.

Standard library only: ``tailorctl`` (``daemon/ctl/show.py``) shares this rule with the
daemon's log lines and must start without torch.
"""

from __future__ import annotations

__all__ = ["escape"]

_SPELLED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
# C0 and C1 control characters, and the bidirectional overrides that reorder what follows.
_CONTROL = [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_TRANSLATION = {c: _SPELLED.get(c, f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _CONTROL}


def escape(value: object) -> str:
    """``value`` as one line of text with its control characters written as escapes
    (``\\x1b``, ``\\n``); everything else, backslashes and brackets too, as it is."""
    return str(value).translate(_TRANSLATION)
