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
) -> Decision:
    if queued == 0:
        return Decision(False, "nothing queued")
    if manual:
        return Decision(True, "requested")
    if queued < policy.min_queued:
        return Decision(False, f"{queued} queued, waiting for {policy.min_queued} (min_queued)")
    quiet_until = (last_queued_at or now) + policy.quiet_seconds
    if now < quiet_until:
        wait = quiet_until - now
        return Decision(False, f"{queued} queued, quiet period ends in {wait:.0f}s", wait)
    return Decision(True, f"{queued} queued and quiet for {policy.quiet_seconds:g}s")
