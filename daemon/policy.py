"""The update policy: whether an update may start now, and why (shown in status).

Every condition is answered as a :class:`Check` (name, ok, detail), one per configured
condition, in the order people read them: ``backoff``, ``min_queued``, ``quiet``,
``schedule``, then the machine's (``power``, ``window``, ``idle``), which the caller measures
(``daemon/conditions/``) and passes in. An automatic update runs when all of them hold, with
two alternatives: a due ``schedule`` stands in for ``quiet`` and ``min_queued``, and queued
samples older than ``max_wait_seconds`` stand in for ``idle`` (a machine that is never idle
still learns, eventually). The reason is the first condition that blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tailord.daemon.conditions.check import Check
from tailord.daemon.config import PolicyConfig


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str
    retry_in: float | None = None  # seconds until the answer may change by itself
    conditions: tuple[Check, ...] = ()  # one per configured condition, for status
    overdue: bool = False  # runs though busy (max_wait_seconds): not to be expired for it


def decide(
    policy: PolicyConfig,
    *,
    queued: int,
    last_queued_at: float | None,
    now: float,
    manual: bool = False,
    failures: int = 0,
    last_failure_at: float | None = None,
    machine: Sequence[Check] = (),
    schedule: Check | None = None,
    oldest_age: float | None = None,
) -> Decision:
    """``last_queued_at`` (when the newest queued sample arrived), ``last_failure_at`` and
    ``now`` are read on one clock, the caller's: the daemon passes the monotonic clock.

    ``failures`` counts the updates that failed in a row; after one, automatic updates
    back off exponentially (``retry_seconds`` doubling up to ``max_retry_seconds``) so a
    broken sample or a full disk does not start a failing update every few seconds.
    ``machine`` holds the measured idle/power/window checks, ``schedule`` the cron's, and
    ``oldest_age`` how long the oldest queued sample has waited (seconds)."""
    checks = _checks(policy, queued, last_queued_at, now, failures, last_failure_at)
    if schedule is not None:
        checks.append(schedule)
    checks.extend(machine)
    conditions = tuple(checks)
    if queued == 0:
        return Decision(False, "nothing queued", conditions=conditions)
    if manual:
        return Decision(True, "requested", conditions=conditions)
    due = schedule is not None and schedule.ok
    overdue = bool(policy.max_wait_seconds) and (oldest_age or 0.0) >= policy.max_wait_seconds
    blocking = [
        c
        for c in conditions
        if not c.ok
        and c.name != "schedule"  # an alternative to quiet, never a reason to wait
        and not (due and c.name in ("quiet", "min_queued"))
        and not (overdue and c.name == "idle")
    ]
    if blocking:
        waits = [c.retry_in for c in blocking if c.retry_in is not None]
        return Decision(
            False, f"waiting: {blocking[0].detail}", min(waits) if waits else None, conditions
        )
    if due:
        return Decision(True, f"{queued} queued; the schedule is due", conditions=conditions)
    if overdue and any(c.name == "idle" and not c.ok for c in conditions):
        return Decision(
            True,
            f"{queued} queued for over {policy.max_wait_seconds:g}s (max_wait_seconds), "
            "busy or not",
            conditions=conditions,
            overdue=True,
        )
    return Decision(
        True, f"{queued} queued and quiet for {policy.quiet_seconds:g}s", conditions=conditions
    )


def _checks(
    policy: PolicyConfig,
    queued: int,
    last_queued_at: float | None,
    now: float,
    failures: int,
    last_failure_at: float | None,
) -> list[Check]:
    checks = [Check("backoff", True, "no failed update")]
    if failures and last_failure_at is not None:
        backoff = min(policy.retry_seconds * 2 ** (failures - 1), policy.max_retry_seconds)
        if now < last_failure_at + backoff:
            wait = last_failure_at + backoff - now
            checks[0] = Check(
                "backoff",
                False,
                f"{failures} update(s) failed in a row; retrying in {wait:.0f}s "
                "(see `tailorctl status`; `tailorctl update` retries now)",
                wait,
            )
        else:
            checks[0] = Check("backoff", True, f"{failures} update(s) failed; retry due")
    if queued < policy.min_queued:
        checks.append(
            Check(
                "min_queued",
                False,
                f"{queued} queued of the {policy.min_queued} needed (min_queued)",
            )
        )
    else:
        checks.append(Check("min_queued", True, f"{queued} queued >= {policy.min_queued}"))
    quiet_until = (now if last_queued_at is None else last_queued_at) + policy.quiet_seconds
    if queued and now < quiet_until:
        wait = quiet_until - now
        checks.append(
            Check("quiet", False, f"{queued} queued, quiet period ends in {wait:.0f}s", wait)
        )
    else:
        checks.append(Check("quiet", True, f"quiet for {policy.quiet_seconds:g}s"))
    return checks
