"""Back-pressure: how many more samples the queue takes before new files wait in the inbox
(``[ingest] max_queued_samples`` / ``max_queued_bytes``)."""

from __future__ import annotations

import time

from tailord.daemon.config import IngestConfig
from tailord.daemon.inbox.stats import IngestStats
from tailord.storage.db import Database
from tailord.storage.samples import queued_totals

TOTALS_SECONDS = 1.0  # how stale the queued totals used for back-pressure may be


class QueueRoom:
    """The queue's totals, read from the database at most every ``TOTALS_SECONDS`` and
    counted up by each commit in between; ``stats.backpressure`` says when it is full."""

    def __init__(self, db: Database, options: IngestConfig, stats: IngestStats) -> None:
        self.db = db
        self.options = options
        self.stats = stats
        self._totals = (0, 0)
        self._totals_at = -TOTALS_SECONDS

    def room(self) -> int:
        """How many more samples the queue takes before back-pressure (0: files wait)."""
        now = time.monotonic()
        if now - self._totals_at >= TOTALS_SECONDS:
            with self.db.read() as session:
                self._totals = queued_totals(session)
            self._totals_at = now
        count, size = self._totals
        cap_n, cap_b = self.options.max_queued_samples, self.options.max_queued_bytes
        if count < cap_n and size < cap_b:
            self.stats.backpressure = None
            return cap_n - count
        self.stats.backpressure = (
            f"the queue holds {count} samples ({size} bytes), at the cap of "
            f"[ingest] max_queued_samples={cap_n} / max_queued_bytes={cap_b}; new files wait "
            "in the inbox until an update learns the queue (or raise the cap)"
        )
        return 0

    def refresh(self) -> None:
        """Read the totals afresh at the next :meth:`room`: an answer depends on it."""
        self._totals_at = -TOTALS_SECONDS

    def grew(self, samples: int, size: int) -> None:
        """Count a commit's new samples until the totals are read again."""
        count, total = self._totals
        self._totals = (count + samples, total + size)
