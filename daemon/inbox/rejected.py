"""``INBOX/.rejected/``: what could not be used, each with a one-line ``<name>.reason``."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import BinaryIO

from tailord.daemon.inbox.layout import REJECTED
from tailord.daemon.text import escape

logger = logging.getLogger(__name__)

MAX_LISTED_LINES = 5  # refused .jsonl lines named in the one-line reason


def _free_name(rejected: Path, name: str) -> Path:
    target = rejected / name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    counter = 1
    while target.exists() or target.is_symlink():
        target = rejected / (f"{stem}.{counter}.{suffix}" if dot else f"{stem}.{counter}")
        counter += 1
    return target


def _write_reason(target: Path, rel: Path, reason: str) -> None:
    line = " ".join(f"{rel}: {reason}".split())  # one line, whatever the reason held
    # Written aside and renamed in, so whoever watches .rejected/ never reads half a reason.
    tmp = target.with_name(f".{target.name}.reason.tmp")
    tmp.write_text(line + "\n")
    os.rename(tmp, target.with_name(target.name + ".reason"))


def reject(inbox: Path, path: Path, reason: str) -> Path:
    """Move ``path`` (the entry itself, never a symlink's target) to ``.rejected/`` with a reason.

    A symlinked label folder is moved as a whole, so nothing outside the inbox is touched.
    Raises OSError when the inbox cannot be changed (read-only): the caller records that.
    """
    rejected = inbox / REJECTED
    # At most 0750: the daemon's umask (daemon/privacy.py) leaves it to the owner, or its group.
    rejected.mkdir(mode=0o750, exist_ok=True)
    rel = path.relative_to(inbox)
    source = path
    if len(rel.parts) >= 2 and (inbox / rel.parts[0]).is_symlink():
        source = inbox / rel.parts[0]
    target = _free_name(rejected, source.name)
    os.rename(source, target)
    _write_reason(target, rel, reason)
    logger.warning("rejected %s: %s", escape(rel), escape(reason))
    return target


class RefusedLines:
    """The refused lines of one ``.jsonl`` batch, in bounded memory whatever the file's size.

    Each refused line is counted and written at once to a hidden file in ``.rejected/``
    (renamed to ``<name>`` by :meth:`publish`); only the first :data:`MAX_LISTED_LINES` line
    numbers and reasons are kept, for the one-line reason. Holding every line and reason
    took ~230 bytes a line: a 10-million-line file of ``{}`` took the daemon to 2.5 GB.
    """

    def __init__(self, inbox: Path, path: Path) -> None:
        self.inbox = inbox
        self.path = path
        self.count = 0
        self.first: list[tuple[int, str]] = []  # (line number, reason), at most MAX_LISTED_LINES
        self._tmp = inbox / REJECTED / f".{path.name}.refused.tmp"
        self._out: BinaryIO | None = None
        self._error: OSError | None = None  # a read-only inbox: counted, not written

    def add(self, number: int, reason: str, line: bytes | None) -> None:
        """Refuse line ``number``; ``line`` is None for one too long to hold (not kept)."""
        self.count += 1
        if len(self.first) < MAX_LISTED_LINES:
            self.first.append((number, reason))
        if line is None or self._error is not None:
            return
        try:
            out = self._out or self._open()
            out.write(line if line.endswith(b"\n") else line + b"\n")
        except OSError as exc:
            self._error = exc

    def reason(self, total: int) -> str:
        shown = "; ".join(f"line {n}: {why}" for n, why in self.first)
        hidden = self.count - len(self.first)
        more = f" (and {hidden} more)" if hidden else ""
        return (
            f"{self.count} of {total} lines refused, the others were ingested: {shown}{more}; "
            "fix these lines (they are in the .rejected file) and drop them in again"
        )

    def publish(self, reason: str) -> Path:
        """Move the refused lines to ``.rejected/<name>`` beside its reason.

        Raises OSError when the inbox cannot be changed (read-only): the caller logs it.
        """
        if self._error is not None:
            raise self._error
        out = self._out or self._open()
        self._out = None
        out.close()
        try:
            target = _free_name(self.inbox / REJECTED, self.path.name)
            os.rename(self._tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            raise
        _write_reason(target, self.path.relative_to(self.inbox), reason)
        logger.warning("rejected lines of %s: %s", escape(self.path.name), escape(reason))
        return target

    def discard(self) -> None:
        """Drop what was written (the file is read again later, or was published)."""
        if self._out is not None:
            self._out.close()
            self._out = None
            with contextlib.suppress(OSError):
                self._tmp.unlink()

    def _open(self) -> BinaryIO:
        self._tmp.parent.mkdir(mode=0o750, exist_ok=True)
        # The inbox's writers can write here too: never follow or reuse what they left.
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._out = os.fdopen(os.open(self._tmp, flags, 0o644), "wb", buffering=1 << 16)
        return self._out
