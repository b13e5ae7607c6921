"""The main loop's work on each wake-up: whether an update may run now, and running it.

:meth:`Pacer.step` asks the policy (daemon/policy.py) from the database, keeps what it needs
between wake-ups (a manual request, the failures in a row that back automatic updates off,
why the last update expired, read-only mode) and runs the update on the calling thread, the
main one.

The quiet period is timed on the monotonic clock from the moment the ingestor's commit
returned (the database's ``created_at`` is wall-clock time, and is only used for samples
queued before this start-up). When it will end, a one-off timer (``wake_in``, the daemon's
APScheduler job) is set for that moment and wakes the main loop, which starts the update at
once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tailord.daemon.conditions.check import Check
from tailord.daemon.conditions.monitor import Monitor
from tailord.daemon.config import PolicyConfig
from tailord.daemon.events import EventBus, SampleQueued, UpdateExpired
from tailord.daemon.policy import Decision, decide
from tailord.daemon.startup import Repair
from tailord.daemon.updates.guard import Guard
from tailord.daemon.updates.resume import resumable
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.storage.db import Database
from tailord.storage.samples import counts, last_queued_at, oldest_queued_at
from tailord.storage.states import SampleState, UpdateState
from tailord.storage.versions import VersionStore

logger = logging.getLogger(__name__)


class Pacer:
    """When updates run, decided afresh on each wake-up of the main loop.

    ``policy`` is read at every decision (SIGHUP replaces it); ``wake`` and ``wake_in`` ask
    the main loop to look again now or in so many seconds; ``report`` tells systemd the
    status line once ``reason`` changed.
    """

    def __init__(
        self,
        *,
        policy: Callable[[], PolicyConfig],
        db: Database,
        store: VersionStore,
        history: History,
        updater: Updater,
        monitor: Monitor,
        guard: Guard,
        events: EventBus,
        repair: Callable[[], Repair],
        read_only: str | None,
        wake: Callable[[], None],
        wake_in: Callable[[float], None],
        report: Callable[[], None],
    ) -> None:
        self._policy = policy
        self._db = db
        self._store = store
        self._history = history
        self._updater = updater
        self._monitor = monitor
        self._guard = guard
        self._events = events
        self._repair = repair
        self._wake = wake
        self._wake_in = wake_in
        self._report = report
        # Why no update may run: start-up repair was refused by the disk (see startup.py).
        self._read_only = read_only
        # A request accepted before a restart still runs (a deferred one still waits for the
        # conditions: the automatic path takes its row).
        self.manual = updater.has_pending(deferred=False)
        self._failures = 0  # updates failed in a row: automatic ones back off
        self._last_failure_at: float | None = None  # monotonic
        # When the newest sample this process queued was committed (monotonic): the quiet
        # period counts from it. Set by the ingestor's thread; a float assignment is atomic.
        self._last_queued: float | None = None
        # The latest decision's reason and conditions, for status (read-only: why, from the
        # first request on).
        self.reason = "starting" if read_only is None else read_only
        self.conditions: tuple[Check, ...] = ()
        self._expired: str | None = None  # why the last update expired, until the next runs

    def step(self) -> None:
        """One wake-up's work: decide, and run the update (blocking) when it may run."""
        if self._read_only is not None and not self._leave_read_only():
            self.reason = self._read_only
            self._report()
            return
        self._updater.record_unrecorded()
        manual, self.manual = self.manual, False
        decision = self._decide(manual)
        reason = decision.reason
        if not decision.run and self._expired:
            reason = f"{self._expired}; {reason}"  # why the last one stopped, and now
        self.reason, self.conditions = reason, decision.conditions
        if not decision.run and decision.reason == "nothing queued":
            self._monitor.served()  # a schedule that fires on an empty queue has no work
        self._report()
        if decision.run:
            self._expired = None
            resume = resumable(self._db, self._store.current_number(), self._updater.checkpoints)
            self._guard.watch(manual, ignore_idle=decision.overdue)
            if not manual:
                self._monitor.served()
            self._updater.run(decision.reason, resume)
            self._note_outcome()
            self._wake()  # samples may have arrived meanwhile
        elif manual and self._updater.has_pending():
            self._updater.run(decision.reason)  # ends the request: nothing to learn
        elif decision.retry_in is not None:
            self._wake_in(decision.retry_in)

    def failed(self) -> None:
        """A step failed (a full or failing disk, a bug): automatic updates back off."""
        self._failures += 1
        self._last_failure_at = time.monotonic()

    def requested(self) -> None:
        # The API accepted a manual update (its row exists): run it even below the threshold.
        self.manual = True
        self._wake()

    def queued(self, added: int) -> None:
        """``added`` samples were committed (by the ingestor or the API) just now."""
        self._last_queued = time.monotonic()  # the quiet period restarts
        self._updater.release()  # a new sample: the hold after a cancel ends
        self._events.publish(SampleQueued(added))
        self._wake()

    def live_conditions(self) -> tuple[Check, ...]:
        """The last decision's conditions; while an update runs, the machine's measured now
        (what the guard sees: the CPU without tailord's worker)."""
        if self._updater.running is None:
            return self.conditions
        machine = {c.name: c for c in self._monitor.machine(worker_running=True)}
        return tuple(machine.get(c.name, c) for c in self.conditions)

    def _leave_read_only(self) -> bool:
        """Retry start-up repair; True once it succeeded (updates may run again)."""
        repaired = self._repair()
        if repaired.read_only is not None:
            self._read_only = repaired.read_only
            return False
        logger.warning("start-up repair succeeded; leaving read-only mode")
        self._read_only = None
        self._history.start()  # [versions] keep, skipped while read-only
        return True

    def _decide(self, manual: bool) -> Decision:
        held = self._updater.held_by
        if held is not None and not manual:
            return Decision(
                False,
                f"update {held} was cancelled; automatic updates wait for a new sample "
                "(`tailorctl update` starts one now)",
            )
        with self._db.read() as session:
            by_label = counts(session).get(SampleState.QUEUED, {})
            last = last_queued_at(session)
            oldest = oldest_queued_at(session)
        now = time.monotonic()
        arrived = self._last_queued
        if arrived is None and last is not None:
            # Only samples queued before this start-up: their wall-clock time is all there
            # is, carried over to the monotonic clock (a clock set back counts as no time).
            arrived = now - max(0.0, time.time() - last)
        return decide(
            self._policy(),
            queued=sum(by_label.values()),
            last_queued_at=arrived,
            now=now,
            manual=manual,
            failures=self._failures,
            last_failure_at=self._last_failure_at,
            machine=self._monitor.machine(),
            schedule=self._monitor.schedule(),
            oldest_age=None if oldest is None else max(0.0, time.time() - oldest),
        )

    def _note_outcome(self) -> None:
        last = self._updater.last_update()
        if last is not None and UpdateState(last.state) is UpdateState.EXPIRED:
            self._events.publish(UpdateExpired(last.id, last.error or "expired"))
            self._expired = last.error or "expired"
            self._monitor.expired()
        failed = last is not None and UpdateState(last.state) is UpdateState.FAILED
        if failed or self._updater.unrecorded:  # a failure the disk would not let us record
            self.failed()
        else:
            self._failures = 0
