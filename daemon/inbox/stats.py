"""The ingestor's counters since start-up, shown in status."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IngestStats:
    """Counters since start-up, shown in status."""

    ingested: int = 0
    duplicates: int = 0
    relabeled: int = 0
    rejected: int = 0
    last_error: str | None = None
    backpressure: str | None = None  # set while the queue is at its cap and files wait
    last_commit_at: float | None = None
