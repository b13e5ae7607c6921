"""An update's progress events on the daemon's side: published at once, stored in batches."""

from __future__ import annotations

import logging
import time

import msgspec

from tailord.daemon.api import bodies
from tailord.daemon.disk import disk_errno
from tailord.daemon.events import EventBus, UpdateProgressed
from tailord.storage.db import Database
from tailord.storage.update_events import add_event

PUBLISH_EVERY = 0.1  # seconds between published mini-batch events
STORE_EVERY = 1.0  # seconds between writes of the events received meanwhile

logger = logging.getLogger(__name__)


class ProgressLog:
    """Receives one update's progress events from its worker.

    Every event is stored with the update, but in one transaction a second rather than one
    per event: a small head ends an epoch every few milliseconds, and a commit (with its
    fsync) per epoch kept the daemon's main thread busy enough to slow the API down while
    an update trained. Subscribers get epoch ends at once and mini-batch events at most
    ``PUBLISH_EVERY`` apart, so neither they nor the API are flooded.
    """

    def __init__(self, db: Database, events: EventBus, update_id: int) -> None:
        self.db = db
        self.events = events
        self.update_id = update_id
        self.latest: bodies.Progress | None = None
        self._unstored: list[bodies.Progress] = []
        self._next_publish = 0.0
        self._next_store = time.monotonic() + STORE_EVERY

    def add(self, event: bodies.Progress) -> None:
        self.latest = event
        self._unstored.append(event)
        now = time.monotonic()
        if event.kind != "batch" or now >= self._next_publish:
            self.events.publish(UpdateProgressed.of(self.update_id, event))
            self._next_publish = now + PUBLISH_EVERY
        if now >= self._next_store:
            try:
                self.flush()
            except Exception as exc:
                # A full disk: the curve loses these events, the update goes on (its own
                # writes meet the same disk, and fail or not on their own account).
                if disk_errno(exc) is None:
                    raise
                logger.warning("update %d: progress events not stored: %s", self.update_id, exc)

    def flush(self) -> None:
        """Store what has come since the last write (also called when the update ends)."""
        self._next_store = time.monotonic() + STORE_EVERY
        if not self._unstored:
            return
        events, self._unstored = self._unstored, []
        with self.db.write() as session:
            for event in events:
                add_event(session, self.update_id, msgspec.structs.asdict(event))
