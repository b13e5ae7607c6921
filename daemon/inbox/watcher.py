"""Watching the inbox: a watchdog observer that only records paths, and the paths it records.

The inbox's parent folder is watched too (not recursively, folders only): an inbox deleted
(or moved away) and made again is a new folder, which inotify's watch on the old one never
sees, so files dropped there used to wait for the periodic rescan. Its creation now
re-watches it at once, says so in the log, and asks for a scan of what came meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import ObservedWatch
from watchdog.observers.inotify import InotifyObserver

from tailord.daemon.inbox.layout import is_candidate

logger = logging.getLogger(__name__)


class PendingPaths:
    """Paths waiting for the ingestor: an ordered set the watcher thread only adds to.

    Beside it, the files only announced as *created*: one created by ``open()`` may still be
    being written, so the ingestor takes those through the settle rules (its close, if
    it comes, queues it at once anyway).

    It also counts the watcher's events since the last scan: inotify drops events silently
    when its queue (``fs.inotify.max_queued_events``, 16384 by default) overflows, which a
    burst of a few thousand files does, so a burst is followed by a rescan once it is over.
    """

    def __init__(self) -> None:
        self._paths: dict[Path, None] = {}
        self._created: dict[Path, None] = {}
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

    def add_created(self, path: Path) -> None:
        # No wake-up: such a file waits settle_seconds anyway, and waking the ingestor for
        # each one would cut its batches short in a burst written in place (whose files are
        # all created first, and taken at their close).
        with self._cond:
            self._created[path] = None

    def take_created(self) -> list[Path]:
        """The created files not queued meanwhile by their close (or a rename)."""
        with self._cond:
            taken = [path for path in self._created if path not in self._paths]
            self._created.clear()
            return taken

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
        # Renamed into place (the Maildir way), or a whole label folder moved in: from inside
        # the inbox, or from outside it (the observer reports a rename from a folder it does
        # not watch as a move with no source, not as a created file). A rename is atomic, so
        # the file is whole: recorded at once, like a file closed after writing.
        if not event.dest_path:
            return  # moved out of the inbox
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
        # here so they are refused at once rather than at the next rescan. A regular file
        # may be one that open() created and is still writing: the ingestor takes it once it
        # has settled (or at its close), never cut short. The files of a label folder moved
        # in arrive here too (synthetic events), and are taken the same way.
        path = Path(os.fsdecode(event.src_path))
        if event.is_directory:
            if is_candidate(self.inbox, path):
                self.pending.add(path)
            return
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                self._record(event.src_path)
            elif is_candidate(self.inbox, path):
                self.pending.add_created(path)


class _ParentHandler(FileSystemEventHandler):
    """Events of the inbox's parent folder: the inbox itself going away and coming back."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_created(self, event: FileSystemEvent) -> None:
        if event.is_directory and self._is_inbox(event.src_path):
            self.watcher.rewatch()

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            return
        if event.dest_path and self._is_inbox(event.dest_path):
            self.watcher.rewatch()  # a folder renamed into the inbox's place
        elif self._is_inbox(event.src_path):
            self.watcher.gone("moved away")

    def on_deleted(self, event: FileSystemEvent) -> None:
        if event.is_directory and self._is_inbox(event.src_path):
            self.watcher.gone("deleted")

    def _is_inbox(self, raw: str | bytes) -> bool:
        return Path(os.fsdecode(raw)) == self.watcher.inbox


class Watcher:
    """A watchdog observer on the inbox that only records paths and returns.

    ``on_recreated`` is called (on the observer's thread) once a deleted inbox has been
    made again and is watched again: the place to scan it for files dropped meanwhile.
    """

    def __init__(
        self,
        inbox: Path,
        pending: PendingPaths,
        on_recreated: Callable[[], object] | None = None,
    ) -> None:
        self.inbox = inbox
        self._pending = pending
        self._on_recreated = on_recreated
        # Full events: a file renamed in from a folder outside the inbox (inotify's
        # IN_MOVED_TO with no IN_MOVED_FROM in the watched tree) is then a move with an
        # empty source, rather than a created file indistinguishable from one open() made.
        self._observer = InotifyObserver(generate_full_events=True)
        self._watch = self._schedule()
        with contextlib.suppress(OSError):  # a parent we may not watch: rescans still cover
            self._observer.schedule(
                _ParentHandler(self),
                str(inbox.parent),
                recursive=False,
                event_filter=[DirCreatedEvent, DirMovedEvent, DirDeletedEvent],
            )
        self._observer.daemon = True

    def _schedule(self) -> ObservedWatch:
        # Only the events acted on: inotify is then not even asked for modify, open, delete
        # or attribute events, which would fill its queue (and overflow it) in a burst.
        return self._observer.schedule(
            _Handler(self.inbox, self._pending),
            str(self.inbox),
            recursive=True,
            event_filter=[
                FileClosedEvent,
                FileMovedEvent,
                DirMovedEvent,
                FileCreatedEvent,
                DirCreatedEvent,
            ],
        )

    def gone(self, how: str) -> None:
        logger.warning(
            "the inbox %s was %s; files dropped in its place are taken once it exists again",
            self.inbox,
            how,
        )

    def rewatch(self) -> None:
        """Watch the inbox folder now at its path (it was made again); then scan it."""
        with contextlib.suppress(KeyError):
            self._observer.unschedule(self._watch)
        try:
            self._watch = self._schedule()
        except OSError as exc:  # gone again already, or not a folder: the next creation
            logger.warning("cannot watch the inbox %s again: %s", self.inbox, exc)
            return
        logger.warning("the inbox %s was created again; watching it again", self.inbox)
        if self._on_recreated is not None:
            self._on_recreated()

    def start(self) -> None:
        self._observer.start()

    def alive(self) -> bool:
        """Whether the observer's thread runs (systemd's watchdog is pinged only then)."""
        return self._observer.is_alive()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
