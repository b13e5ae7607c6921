"""Opening an inbox entry safely: no symlink followed, no FIFO blocked on, a size cap."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from tailord.daemon.inbox.layout import Refused, relative

logger = logging.getLogger(__name__)


class Unsettled(Exception):
    """The file changed while it was read: a writer still has it open; look again later."""


def open_entry(inbox: Path, path: Path, max_bytes: int) -> tuple[int, os.stat_result]:
    """Open an inbox file safely; returns its descriptor (the caller closes it) and stat.

    No symlink is followed and nothing blocks on a FIFO (see :func:`_open_entry`); then the
    descriptor must be a regular file with one link and at most ``max_bytes`` long.
    """
    fd = _open_entry(inbox, relative(inbox, path).split("/"))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("is not a regular file (a FIFO, device or folder); write a plain file")
        if st.st_nlink != 1:
            raise Refused(
                f"has {st.st_nlink} hard links; tailord removes what it ingests, "
                "so copy the file in instead of linking it"
            )
        if st.st_size > max_bytes:
            raise Refused(
                f"is {st.st_size} bytes, over the {max_bytes}-byte cap "
                "([ingest] max_file_bytes); split it or raise the cap"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_entry(inbox: Path, path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """Read an inbox file through the one descriptor :func:`open_entry` returns.

    Raises :class:`Unsettled` when the file changed while being read (a writer that keeps it
    open): such a file is looked at again later, never ingested truncated nor rejected.
    """
    fd, st = open_entry(inbox, path, max_bytes)
    try:
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 20))):
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise Refused(f"grew past the {max_bytes}-byte cap while being read; split it")
        check_unchanged(fd, st)
        if len(data) != st.st_size:
            raise Unsettled()
        return data, st
    finally:
        os.close(fd)


def check_unchanged(fd: int, before: os.stat_result) -> None:
    """Raise :class:`Unsettled` if the file behind ``fd`` changed since ``before``."""
    after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    ):
        raise Unsettled()


def _open_entry(inbox: Path, parts: list[str]) -> int:
    """Open ``INBOX/<label>/<name>`` (or ``INBOX/<name>``) with ``O_NOFOLLOW`` at each step.

    Opening the label folder and then the file through directory descriptors means a path
    swapped under us cannot redirect the read outside the inbox. ``O_NONBLOCK`` keeps a FIFO
    from hanging the ingestor.
    """
    if not 1 <= len(parts) <= 2:
        raise Refused("is not a file in a label folder; move it to INBOX/<label>/<name>")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd = os.open(inbox, flags | os.O_DIRECTORY)
    try:
        if len(parts) == 1:
            return _open_file(parts[0], flags, dir_fd)
        try:
            label_fd = os.open(parts[0], flags | os.O_DIRECTORY, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Refused(
                    f"label folder {parts[0]} is a symbolic link or not a folder; "
                    "make it a real folder inside the inbox"
                ) from exc
            raise
        try:
            return _open_file(parts[-1], flags, label_fd)
        finally:
            os.close(label_fd)
    finally:
        os.close(dir_fd)


def _open_file(name: str, flags: int, dir_fd: int) -> int:
    try:
        return os.open(name, flags | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(
                "is a symbolic link; tailord reads only regular files inside the inbox, "
                "so copy the file in instead"
            ) from exc
        raise
