"""Watching the inbox: a watchdog observer that only records paths, and the paths it records."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from tailord.daemon.inbox.layout import is_candidate

logger = logging.getLogger(__name__)


class PendingPaths:
    """Paths waiting for the ingestor: an ordered set the watcher thread only adds to.

    It also counts the watcher's events since the last scan: inotify drops events silently
    when its queue (``fs.inotify.max_queued_events``, 16384 by default) overflows, which a
    burst of a few thousand files does, so a burst is followed by a rescan once it is over.
    """

    def __init__(self) -> None:
        self._paths: dict[Path, None] = {}
        self._cond = threading.Condition()
        self._events = 0
        self._last_event = 0.0

    def note_event(self) -> None:
        with self._cond:
            self._events += 1
            self._last_event = time.monotonic()

    def burst_over(self, threshold: int, quiet_seconds: float) -> bool:
        """True once, when ``threshold`` events came since the last call that returned True
        and none for ``quiet_seconds``: the moment to rescan for what inotify dropped."""
        with self._cond:
            if self._events < threshold:
                return False
            if time.monotonic() - self._last_event < quiet_seconds:
                return False
            self._events = 0
            return True

    def add(self, path: Path) -> None:
        with self._cond:
            self._paths[path] = None
            self._cond.notify()

    def take(self, limit: int, timeout: float) -> list[Path]:
        """Up to ``limit`` paths; waits at most ``timeout`` seconds for the first one."""
        if limit <= 0:
            return []
        with self._cond:
            if not self._paths:
                self._cond.wait(timeout)
            taken = list(self._paths)[:limit]
            for path in taken:
                del self._paths[path]
            return taken

    def __len__(self) -> int:
        with self._cond:
            return len(self._paths)


class _Handler(FileSystemEventHandler):
    def __init__(self, inbox: Path, pending: PendingPaths) -> None:
        self.inbox = inbox
        self.pending = pending

    def dispatch(self, event: FileSystemEvent) -> None:
        self.pending.note_event()
        super().dispatch(event)

    def _record(self, raw: str | bytes) -> None:
        path = Path(os.fsdecode(raw))
        if is_candidate(self.inbox, path):
            self.pending.add(path)

    def on_closed(self, event: FileSystemEvent) -> None:
        # Written and closed: the writer is done with it.
        if not event.is_directory:
            self._record(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        # Renamed into place (the Maildir way), or a whole label folder moved in.
        dest = Path(os.fsdecode(event.dest_path))
        if event.is_directory:
            # The ingestor looks inside it, with the settle check (see on_created).
            if is_candidate(self.inbox, dest):
                self.pending.add(dest)
        else:
            self._record(event.dest_path)

    def on_created(self, event: FileSystemEvent) -> None:
        # A new label folder: files renamed into it before its inotify watch existed raise
        # no event, so the ingestor is asked to look inside it (with the settle check).
        # Files made by link() or mknod() are never "closed after write": they are recorded
        # here so they are refused at once rather than at the next rescan.
        path = Path(os.fsdecode(event.src_path))
        if event.is_directory:
            if is_candidate(self.inbox, path):
                self.pending.add(path)
            return
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                self._record(event.src_path)


class Watcher:
    """A watchdog observer on the inbox that only records paths and returns."""

    def __init__(self, inbox: Path, pending: PendingPaths) -> None:
        self.inbox = inbox
        self._observer = Observer()
        # Only the events acted on: inotify is then not even asked for modify, open, delete
        # or attribute events, which would fill its queue (and overflow it) in a burst.
        self._observer.schedule(
            _Handler(inbox, pending),
            str(inbox),
            recursive=True,
            event_filter=[
                FileClosedEvent,
                FileMovedEvent,
                DirMovedEvent,
                FileCreatedEvent,
                DirCreatedEvent,
            ],
        )
        self._observer.daemon = True

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
