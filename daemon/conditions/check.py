"""One condition's answer: whether it holds now, and a sentence saying why."""

from __future__ import annotations

from dataclasses import dataclass

# The names a condition has in /v1/status, metrics and docs (docs/policy.md): one per condition.
NAMES = ("quiet", "min_queued", "idle", "power", "window", "schedule", "backoff")


@dataclass(frozen=True)
class Check:
    name: str  # one of NAMES
    ok: bool
    detail: str  # for people: "CPU pressure 43% > 20% for 10 s", "on mains power"
    retry_in: float | None = None  # seconds until the answer changes by itself, when known
