"""One daemon per data directory: an exclusive ``flock`` on ``<data dir>/tailord.lock``.

Two daemons on one data directory undo each other: start-up repair clears ``staging/`` and
marks the running update interrupted, and their workers write the same checkpoints. The
socket check cannot prevent it (another ``--socket`` passes it, and it comes after the
repair), so the lock is taken before anything else touches the data directory and held
until the process ends.

``flock`` rather than a pid file alone: the kernel drops the lock when the holder dies, even
by SIGKILL, so a crash leaves nothing to clean up. The descriptor is close-on-exec and the
update workers are spawned (fork + exec), so no child keeps the lock after the daemon is gone.
The file holds the holder's pid, only to say who it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from tailord.daemon.errors import DataDirLocked

logger = logging.getLogger(__name__)

LOCK_NAME = "tailord.lock"


class DataDirLock:
    """The held lock; :meth:`release` (or the process's end) lets the next daemon in."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Take the data directory's lock, or raise :class:`DataDirLocked` naming its holder."""
    path = data_dir / LOCK_NAME
    # Not O_TRUNC: the holder's pid must still be readable by the one that is refused.
    # 0640 at most: the process umask (daemon/privacy.py) makes it 0600 unless a group reads.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DataDirLocked(
            f"another tailord ({holder}) is using the data directory {data_dir}; stop it "
            "first (systemctl stop tailord, or kill that pid) or give this one another "
            "--data-dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    # The pid only names the holder: a full disk may refuse it, and the lock holds anyway.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    logger.debug("locked %s", path)
    return DataDirLock(path, fd)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(os.pread(fd, 32, 0).decode('ascii').strip())}"
    return "pid unknown"  # it has the lock but has not written its pid yet
