"""Errors of the disk under the data directory: full, failing, read-only, not ours.

A full disk shows up three ways: ``OSError`` (ENOSPC, EDQUOT) from a file step, SQLite's
"database or disk is full" (SQLITE_FULL), and SQLAlchemy wrapping the latter. The daemon
treats them all alike: nothing already durable is lost, the step is retried later, and the
person is told what to free, in one line. :func:`disk_problem` recognises them anywhere in an
exception's chain and says so in words.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from sqlalchemy.exc import DBAPIError

# errno -> what it means for the person, and what to do about it.
_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EIO: "the disk reported an I/O error",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
# SQLite's own messages for the same conditions (it does not always keep the errno).
_SQLITE = {
    "database or disk is full": errno.ENOSPC,
    "disk i/o error": errno.EIO,
    "attempt to write a readonly database": errno.EROFS,
    "unable to open database file": errno.EACCES,
    "readonly database": errno.EROFS,
}


def disk_errno(exc: BaseException) -> int | None:
    """The errno of the disk condition behind ``exc`` (or its causes), or None if none is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _ERRNOS:
            return current.errno
        if isinstance(current, DBAPIError) and current.orig is not None:
            current = current.orig
            continue
        if isinstance(current, sqlite3.Error):
            text = str(current).lower()
            for message, number in _SQLITE.items():
                if message in text:
                    return number
        current = current.__cause__ or current.__context__
    return None


def disk_problem(exc: BaseException, where: Path) -> str | None:
    """``exc`` in one line with ``where`` and what to do, if it is a disk condition; else None."""
    number = disk_errno(exc)
    if number is None:
        return None
    if number in (errno.ENOSPC, errno.EDQUOT):
        todo = f"free space on the file system of {where} (df {where})"
    elif number == errno.EIO:
        todo = f"check the disk of {where} (dmesg, smartctl) and free or move the data"
    elif number == errno.EROFS:
        todo = f"remount the file system of {where} read-write, or choose another --data-dir"
    else:
        todo = (
            f"make {where} owned and writable by uid {os.geteuid()} (chown), "
            "or choose another --data-dir"
        )
    return f"{_ERRNOS[number]} under {where}; {todo}"
