"""The ``schedule``: a cron expression at which an update is due whenever samples are queued.

Parsed by APScheduler's own ``CronTrigger.from_crontab`` (the trigger the scheduler fires),
so what the config accepts is exactly what runs. Firing sets the schedule *due*; it stays
due until an automatic update starts, so a fire while the machine was busy is not lost.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from apscheduler.triggers.cron import CronTrigger

from tailord.daemon.conditions.check import Check

EXAMPLE = '"0 2 * * *" (every day at 02:00)'


def parse_schedule(text: str, zone: tzinfo) -> CronTrigger:
    """A five-field crontab line; raises ValueError naming what is wrong."""
    try:
        return CronTrigger.from_crontab(text, timezone=zone)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"schedule {text!r} is not a cron expression: {exc}") from exc


def check_schedule(trigger: CronTrigger, due_since: datetime | None, now: datetime) -> Check:
    """Due since a fire not yet served, or when it fires next."""
    if due_since is not None:
        return Check("schedule", True, f"due since {due_since:%Y-%m-%d %H:%M}")
    following = trigger.get_next_fire_time(None, now)
    if following is None:
        return Check("schedule", False, "never fires again")
    return Check("schedule", False, f"next at {following:%Y-%m-%d %H:%M}")
