"""Noticing that the wall clock stepped, and re-arming the timers that it would stall.

APScheduler 3 keeps every job's next run as a wall-clock time, and waits for it on a
monotonic timeout computed from the wall clock. A step **forward** (the clock set ahead, NTP
stepping, a resume from suspend) makes every late job fire once (``coalesce``; the cron's
missed fire still counts, once: no ``misfire_grace_time``), which is right. A step
**backward** (one hour, say) would push every interval job one hour away: the conditions'
re-check, the guard's expiry and stall checks and the policy's wake-ups would stop for that
hour. :meth:`ClockWatch.check`, called by the main loop every few tenths of a second, sees a
step as a change of the wall clock's offset from the monotonic clock, re-arms each interval
job from now, and wakes the main loop (whose one-shot timer, the quiet period's, is set
again from the monotonic clock when it decides). Cron jobs keep their wall-clock times: a
cron expression names wall-clock moments.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

logger = logging.getLogger(__name__)

# Offset change between two looks that counts as a step. NTP slews at most 0.5 ms per
# second, and two looks are a fraction of a second apart: a step is anything far above.
JUMP_SECONDS = 2.0


class ClockWatch:
    def __init__(
        self,
        scheduler: BaseScheduler,
        wake: Callable[[], None],
        wall: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # APScheduler's own reading of the wall clock, so both see the same step.
        wall = wall or (lambda: datetime.now(UTC).timestamp())
        self.scheduler, self.wake, self.wall, self.clock = scheduler, wake, wall, clock
        self._offset = wall() - clock()

    def check(self) -> float | None:
        """The step the wall clock took since the last look (seconds), or None."""
        offset = self.wall() - self.clock()
        step, self._offset = offset - self._offset, offset
        if abs(step) < JUMP_SECONDS:
            return None
        logger.warning("the wall clock stepped by %+.0f s; timers re-armed from now", step)
        for job in self.scheduler.get_jobs():
            if isinstance(job.trigger, IntervalTrigger):
                seconds = job.trigger.interval.total_seconds()
                self.scheduler.reschedule_job(job.id, trigger="interval", seconds=seconds)
        self.wake()
        return step
