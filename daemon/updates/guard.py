"""The running update's guard: expiry when a condition ceases to hold, and liveness.

:meth:`Guard.tick` runs on the scheduler's thread every ``sample_seconds``. It samples the
machine's conditions; while an *automatic* update runs and ``expire = true``, a failing
``power``, ``window`` or ``idle`` check asks the updater to stop it as ``expired`` (the
worker stops at its next mini-batch and checkpoints there, so the next update resumes). A worker
that sent no progress for ``stall_seconds`` is stopped too, and its update fails with reason
``stalled`` (a failure: the back-off applies). Manual updates never expire; they can stall.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from apscheduler.schedulers.base import BaseScheduler

from tailord.daemon.conditions.check import Check
from tailord.daemon.conditions.monitor import Monitor
from tailord.daemon.config import PolicyConfig
from tailord.daemon.updates.rows import Ending
from tailord.daemon.updates.running import StopRequest
from tailord.daemon.updates.updater import Updater
from tailord.storage.states import UpdateState

logger = logging.getLogger(__name__)

# What a failing condition means for people, and what lets the update resume.
_MEANING = {
    "idle": ("machine busy", "idle"),
    "power": ("power", "on mains or charged"),
    "window": ("window closed", "the window opens"),
}


class Guard:
    def __init__(
        self,
        policy: PolicyConfig,
        monitor: Monitor,
        updater: Updater,
        own_pids: Callable[[], Iterable[int]],
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy, self.monitor, self.updater = policy, monitor, updater
        self.own_pids, self.on_change, self.clock = own_pids, on_change, clock
        self._lock = threading.Lock()
        self._watched: int | None = None  # the update id being watched
        self._manual = False
        self._ignore_idle = False  # started past max_wait_seconds: busy or not
        self._progress: object = None
        self._progress_at = 0.0
        self._flags: tuple[tuple[str, bool], ...] = ()
        self._stopping: int | None = None  # the update a stop was asked for

    def watch(self, manual: bool, ignore_idle: bool = False) -> None:
        """The main loop is about to run an update (manual or not)."""
        with self._lock:
            self._watched, self._manual, self._ignore_idle = None, manual, ignore_idle
            self._progress, self._progress_at = None, self.clock()

    def tick(self) -> None:
        running = self.updater.running
        self.monitor.sample(self.own_pids())
        checks = self.monitor.machine(worker_running=running is not None)
        if running is None:
            flags = tuple((c.name, c.ok) for c in checks)
            if flags != self._flags:
                self._flags = flags
                self.on_change()  # a condition now holds (or fails): decide again
            return
        with self._lock:
            now = self.clock()
            if self._watched != running:
                self._watched, self._progress_at = running, now
            progress = self.updater.progress
            if progress is not self._progress:
                self._progress, self._progress_at = progress, now
            silent = now - self._progress_at
            if self.policy.stall_seconds and silent > self.policy.stall_seconds:
                self._stop(
                    running,
                    Ending(
                        UpdateState.FAILED,
                        error=f"stalled: the worker sent no progress for {silent:.0f}s "
                        f"(stall_seconds = {self.policy.stall_seconds:g}) and was killed",
                    ),
                )
                # Killed, not asked: a stalled worker may be stuck where SIGTERM waits
                # (stopped, or in a kernel call); its checkpoint is whole either way.
                self.updater.workers.kill()
                return
            if self._manual or not self.policy.expire:
                return
            failing = [
                c for c in checks if not c.ok and not (c.name == "idle" and self._ignore_idle)
            ]
            if failing:
                self._stop(running, Ending(UpdateState.EXPIRED, error=self._why(failing[0])))

    def _why(self, check: Check) -> str:
        what, when = _MEANING.get(check.name, (check.name, f"{check.name} holds"))
        progress = self.updater.progress
        epochs = self.updater.running_epochs
        at = "" if progress is None else f" at epoch {progress.epoch}/{epochs}"
        return f"expired{at}: {what} ({check.detail}); resumes when {when}"

    def _stop(self, update_id: int, ending: Ending) -> None:
        if self._stopping == update_id:
            return  # asked already: the worker is on its way out
        if self.updater.stop_running(update_id, StopRequest(ending, keep_checkpoint=True)):
            self._stopping = update_id
            logger.warning("update %d: %s", update_id, ending.error)


def add_policy_jobs(
    scheduler: BaseScheduler,
    policy: PolicyConfig,
    monitor: Monitor,
    guard: Guard,
    wake: Callable[[], None],
) -> None:
    """The policy's timers, on the daemon's one scheduler: the conditions' re-check and
    the cron ``schedule``. Explicit ids, ``coalesce`` and one instance at a time: a late or
    slow tick is merged, never stacked; a wall-clock jump fires the cron at most once
    (a step backward is handled by clockwatch.py)."""
    scheduler.add_job(
        guard.tick,
        "interval",
        seconds=policy.sample_seconds,
        id="conditions",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=max(1, int(policy.sample_seconds * 5)),
    )
    if monitor.trigger is not None:

        def fire() -> None:
            monitor.fire()
            wake()

        scheduler.add_job(
            fire,
            monitor.trigger,
            id="schedule",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            # A fire missed while suspended, or skipped over by a wall-clock step forward,
            # still counts, once (coalesce): no grace limit.
            misfire_grace_time=None,
        )
