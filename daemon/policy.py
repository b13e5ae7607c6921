"""The update policy: whether an update may start now, and why (shown in status)."""

from __future__ import annotations

from dataclasses import dataclass

from tailord.daemon.config import PolicyConfig


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str
    retry_in: float | None = None  # seconds until the answer may change by itself


def decide(
    policy: PolicyConfig,
    *,
    queued: int,
    last_queued_at: float | None,
    now: float,
    manual: bool = False,
    failures: int = 0,
    last_failure_at: float | None = None,
) -> Decision:
    """``last_queued_at`` (when the newest queued sample arrived), ``last_failure_at`` and
    ``now`` are read on one clock, the caller's: the daemon passes the monotonic clock.

    ``failures`` counts the updates that failed in a row; after one, automatic updates
    back off exponentially (``retry_seconds`` doubling up to ``max_retry_seconds``) so a
    broken sample or a full disk does not start a failing update every few seconds."""
    if queued == 0:
        return Decision(False, "nothing queued")
    if manual:
        return Decision(True, "requested")
    if failures and last_failure_at is not None:
        backoff = min(policy.retry_seconds * 2 ** (failures - 1), policy.max_retry_seconds)
        if now < last_failure_at + backoff:
            wait = last_failure_at + backoff - now
            return Decision(
                False,
                f"{failures} update(s) failed in a row; retrying in {wait:.0f}s "
                "(see `tailorctl status`; `tailorctl update` retries now)",
                wait,
            )
    if queued < policy.min_queued:
        return Decision(False, f"{queued} queued, waiting for {policy.min_queued} (min_queued)")
    quiet_until = (now if last_queued_at is None else last_queued_at) + policy.quiet_seconds
    if now < quiet_until:
        wait = quiet_until - now
        return Decision(False, f"{queued} queued, quiet period ends in {wait:.0f}s", wait)
    return Decision(True, f"{queued} queued and quiet for {policy.quiet_seconds:g}s")
