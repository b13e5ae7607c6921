"""``INBOX/.rejected/``: what could not be used, each with a one-line ``<name>.reason``."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

from tailord.daemon.inbox.layout import REJECTED
from tailord.daemon.text import escape

logger = logging.getLogger(__name__)

MAX_LISTED_LINES = 5  # refused .jsonl lines named in the one-line reason


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_rejected(inbox: Path) -> int:
    """A descriptor of ``INBOX/.rejected/`` (made if missing), never through a symlink.

    The inbox's writers can make ``.rejected`` a symlink to any folder the daemon may write
    (its own versions, say), and rejected files and reasons would land there. A symlink is
    removed (its target untouched) and a real folder made; anything else that is not a
    folder is refused with OSError. Every step after this one goes through the descriptor.
    """
    path = inbox / REJECTED
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o750)
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    if not stat.S_ISLNK(os.lstat(path).st_mode):
        raise OSError(
            errno.ENOTDIR, f"{path} is not a folder; move it away so rejected files can go there"
        )
    logger.warning(
        "%s was a symlink (to %s); replaced by a folder: rejected files stay in the inbox",
        escape(path),
        escape(os.readlink(path)),
    )
    os.unlink(path)
    os.mkdir(path, 0o750)
    return os.open(path, _DIR_FLAGS)


def _free_name(folder: int, name: str) -> str:
    """``name``, or ``name`` numbered, not yet taken in the folder ``folder`` (a descriptor)."""
    target = name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    counter = 1
    while True:
        try:
            os.lstat(target, dir_fd=folder)
        except FileNotFoundError:
            return target
        target = f"{stem}.{counter}.{suffix}" if dot else f"{stem}.{counter}"
        counter += 1


def _write_reason(folder: int, name: str, rel: Path, reason: str) -> None:
    # One line, whatever the reason held; control characters from file names and labels
    # written as escapes (``\x1b``), so whoever cats the file gets no terminal sequence.
    line = escape(f"{rel}: {' '.join(reason.split())}")
    # Written aside and renamed in, so whoever watches .rejected/ never reads half a reason.
    tmp = f".{name}.reason.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=folder)
    fd = os.open(tmp, _FILE_FLAGS, 0o644, dir_fd=folder)
    with os.fdopen(fd, "w") as out:
        out.write(line + "\n")
    os.rename(tmp, f"{name}.reason", src_dir_fd=folder, dst_dir_fd=folder)


def reject(inbox: Path, path: Path, reason: str) -> Path:
    """Move ``path`` (the entry itself, never a symlink's target) to ``.rejected/`` with a reason.

    A symlinked label folder is moved as a whole, so nothing outside the inbox is touched.
    Raises OSError when the inbox cannot be changed (read-only): the caller records that.
    """
    folder = open_rejected(inbox)
    try:
        rel = path.relative_to(inbox)
        source = path
        if len(rel.parts) >= 2 and (inbox / rel.parts[0]).is_symlink():
            source = inbox / rel.parts[0]
        name = _free_name(folder, source.name)
        os.rename(source, name, dst_dir_fd=folder)
        _write_reason(folder, name, rel, reason)
    finally:
        os.close(folder)
    logger.warning("rejected %s: %s", escape(rel), escape(reason))
    return inbox / REJECTED / name


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
        self._tmp = f".{path.name}.refused.tmp"  # in .rejected/, reached by descriptor
        self._dir: int | None = None  # .rejected/'s descriptor while lines are written
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
        folder = self._dir
        assert folder is not None
        try:
            name = _free_name(folder, self.path.name)
            os.rename(self._tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            _write_reason(folder, name, self.path.relative_to(self.inbox), reason)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp, dir_fd=folder)
            raise
        finally:
            self._close_dir()
        logger.warning("rejected lines of %s: %s", escape(self.path.name), escape(reason))
        return self.inbox / REJECTED / name

    def discard(self) -> None:
        """Drop what was written (the file is read again later, or was published)."""
        if self._out is not None:
            self._out.close()
            self._out = None
            with contextlib.suppress(OSError):
                os.unlink(self._tmp, dir_fd=self._dir)
        self._close_dir()

    def _open(self) -> BinaryIO:
        self._close_dir()
        self._dir = folder = open_rejected(self.inbox)
        # The inbox's writers can write here too: never follow or reuse what they left.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp, dir_fd=folder)
        fd = os.open(self._tmp, _FILE_FLAGS, 0o644, dir_fd=folder)
        self._out = os.fdopen(fd, "wb", buffering=1 << 16)
        return self._out

    def _close_dir(self) -> None:
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None
