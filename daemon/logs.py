"""Where ``tailord serve`` logs and in which format: the journal's, or a terminal's.

Under systemd, stderr is a stream into journald, which stamps every line with its own time
and reads a leading ``<N>`` as the line's priority (sd-daemon(3)): with it,
``journalctl -p warning -u tailord`` shows warnings and errors only. systemd says so by
setting ``$JOURNAL_STREAM`` to the stream's ``device:inode``; it is trusted only when it
matches stderr itself, since the variable is inherited by whatever tailord's parent started
(a shell inside a service, say) while stderr may since have been redirected.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

TERMINAL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

# sd-daemon(3)'s SD_ERR, SD_WARNING, ...; a level between two takes the more urgent one.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
SD_DEBUG = 7


def priority(levelno: int) -> int:
    for level, number in _PRIORITIES:
        if levelno >= level:
            return number
    return SD_DEBUG


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``: journald adds the time; every line of a traceback gets the
    prefix too, so a multi-line record is not split into an error and six info lines."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def journal_stream(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journald stream ``$JOURNAL_STREAM`` names."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no descriptor (pytest's capture) or closed
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def configure_logging(level: str, stream: TextIO | None = None) -> bool:
    """Log to ``stream`` (stderr) in the journal's format there, else the terminal's.

    Returns whether the journal format was chosen.
    """
    out = sys.stderr if stream is None else stream
    journal = journal_stream(out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(TERMINAL_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    return journal
