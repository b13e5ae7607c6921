"""An update's end: recorded in its row (or kept until a full disk lets it be), then announced
as ``update.finished`` once it no longer runs; and waiting for that end."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from tailord.daemon.api import bodies
from tailord.daemon.disk import disk_problem
from tailord.daemon.events import EventBus, UpdateFinished
from tailord.daemon.updates.rows import Ending, record
from tailord.daemon.updates.running import Running
from tailord.storage.db import Database

logger = logging.getLogger(__name__)


class Endings:
    """Records and announces how updates end, oldest first."""

    def __init__(self, db: Database, data_dir: Path, events: EventBus, running: Running) -> None:
        self.db = db
        self.data_dir = data_dir
        self.events = events
        self.running = running
        # Endings the disk (full, failing) would not let us record: recorded once it does.
        self.unrecorded: dict[int, Ending] = {}

    def finish(self, update_id: int, ending: Ending) -> None:
        """Record how the update ended; on a full or failing disk, keep it to record later.

        Recording a failure is what a full disk most often refuses: raising here would take
        the main loop (and the daemon) down, which is worse than a row recorded late.
        """
        self.unrecorded[update_id] = ending
        self.record_unrecorded()

    def record_unrecorded(self) -> None:
        """Record the endings the disk refused so far, oldest first; stops at the first
        refusal (the disk is still full). The main loop calls it on each wake-up."""
        for update_id, ending in list(self.unrecorded.items()):
            try:
                with self.db.write() as session:
                    record(session, update_id, ending)
            except Exception as exc:
                problem = disk_problem(exc, self.data_dir)
                if problem is None:
                    raise
                logger.error(
                    "cannot record that update %d ended %s (%s); retrying when the daemon "
                    "next looks, and a restart records it as interrupted",
                    update_id,
                    ending.state.value,
                    problem,
                )
                return
            del self.unrecorded[update_id]
            self.announce(update_id, ending)

    def announce(self, update_id: int, ending: Ending) -> None:
        """Publish ``update.finished``; call it once the row that says so is committed."""
        # After the commit: whoever hears of it (``?wait=true``) reads the finished row. And
        # no longer running: a client that asks /v1/status as it hears must not find it so.
        self.running.ended(update_id)
        self.events.publish(UpdateFinished(update_id, ending.state, ending.version, ending.error))


def wait_for_end(
    events: EventBus,
    describe: Callable[[int], bodies.UpdateInfo | None],
    update_id: int,
    timeout: float,
) -> bodies.UpdateInfo | None:
    """Block until update ``update_id`` has finished or ``timeout`` passed; its state."""
    subscription = events.subscribe()  # before reading, so no finish slips between
    try:
        deadline = time.monotonic() + timeout
        while True:
            info = describe(update_id)
            if info is None or not info.active:
                return info
            left = deadline - time.monotonic()
            if left <= 0:
                return info
            # Re-read on its finish event, and each second anyway: the bus drops the
            # oldest events of a slow subscriber (progress events come by the hundred).
            reread_at = min(deadline, time.monotonic() + 1.0)
            while (pause := reread_at - time.monotonic()) > 0:
                event = subscription.get(timeout=pause)
                if subscription.closed:
                    return describe(update_id)  # the daemon is stopping
                if (
                    event is not None
                    and isinstance(event.data, UpdateFinished)
                    and event.data.update == update_id
                ):
                    break
    finally:
        subscription.close()


def why(exc: BaseException, data_dir: Path) -> str:
    """An update's error line: the disk condition in words when it is one."""
    return disk_problem(exc, data_dir) or f"{exc.__class__.__name__}: {exc}"
