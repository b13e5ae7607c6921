"""Which inbox entries the ingestor may take: those that have stopped changing.

Events announce a file once it is closed after writing; scans also find files that no event
announced, and such a file may still be open for writing. :class:`Settling` queues a scanned
entry only once it has settled, and keeps out the entries not to be read again: files
refused in a read-only inbox (until they change) and ingested files it could not remove.

Settled means unchanged (size, mtime, ctime) for ``settle_seconds`` of the monotonic clock
since the daemon first saw it so. The file's timestamps are compared with each other, never
with the wall clock: a file dated in the future (``touch -d '+2 hours'``, a writer's clock
ahead) or a wall clock stepped back used to make a scanned file wait hours, silently.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tailord.daemon.inbox.layout import relative
from tailord.daemon.inbox.watcher import PendingPaths


class Settling:
    """Queues settled inbox entries on ``pending``; the others are looked at again later.

    ``skip`` holds ``(source, size, mtime_ns)`` of files refused but left in place.
    """

    def __init__(
        self,
        inbox: Path,
        settle_seconds: float,
        pending: PendingPaths,
        skip: set[tuple[str, int, int]],
    ) -> None:
        self.inbox = inbox
        self.settle_seconds = settle_seconds
        self.pending = pending
        # Files refused in a read-only inbox: not retried while unchanged.
        self._skip = skip
        self._lock = threading.Lock()  # scans run on the scheduler's thread too
        self._unmovable: set[Path] = set()
        # Scanned files that may still be written: their (size, mtime, ctime), and since when
        # (monotonic) they have looked so.
        self._unsettled: dict[Path, tuple[tuple[int, int, int], float]] = {}

    def queue_when_settled(self, path: Path) -> bool:
        """Queue ``path`` if it has not changed for ``settle_seconds``, else look again later.

        Scans find files that no event announced, and such a file may still be open for
        writing. Its size, mtime and ctime (which ``touch -d`` cannot fake) are the only
        signs that the writer is done: a file first seen just now, or changed since the last
        look, waits ``settle_seconds`` from then.
        """
        with self._lock:
            if path in self._unmovable:
                return False
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self._unsettled.pop(path, None)
                return False
            if (relative(self.inbox, path), st.st_size, st.st_mtime_ns) in self._skip:
                return False
            key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            now = time.monotonic()
            seen = self._unsettled.get(path)
            if seen is None or seen[0] != key:
                self._unsettled[path] = (key, now)
                return False
            if now - seen[1] < self.settle_seconds:
                return False
            self._unsettled.pop(path, None)
        self.pending.add(path)
        return True

    def defer(self, path: Path) -> None:
        """Look at ``path`` again after ``settle_seconds``, as if first seen now."""
        with self._lock:
            self._unsettled.pop(path, None)
        self.queue_when_settled(path)

    def recheck(self) -> None:
        """Look again at the entries that have been unchanged for ``settle_seconds``."""
        now = time.monotonic()
        with self._lock:
            due = [
                path
                for path, (_, since) in self._unsettled.items()
                if now - since >= self.settle_seconds
            ]
        for path in due:
            self.queue_when_settled(path)

    def skip(self, source: str, size: int, mtime_ns: int) -> None:
        """Do not queue ``source`` (refused but left in place) again while it is unchanged."""
        with self._lock:
            self._skip.add((source, size, mtime_ns))

    def unmovable(self, path: Path) -> None:
        """Do not queue ``path`` (ingested but not removable) again."""
        with self._lock:
            self._unmovable.add(path)
