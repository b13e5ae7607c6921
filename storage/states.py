"""The states a sample and an update go through, as enums of their stored values.

Kept apart from ``models.py`` (which imports SQLAlchemy) so that light programs, such as the
``tailorctl`` client decoding events, can name a state without loading the database layer.
"""

from __future__ import annotations

import enum


class SampleState(enum.StrEnum):
    QUEUED = "queued"
    LEARNED = "learned"
    REJECTED = "rejected"  # its update's candidate failed the gate; kept, not learned


class UpdateState(enum.StrEnum):
    PENDING = "pending"  # requested through the API, not started yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    REJECTED = "rejected"  # the gate refused the candidate; no version was made
    CANCELLED = "cancelled"  # stopped on request; its samples stay queued, it is not retried
    EXPIRED = "expired"  # stopped when a policy condition ceased to hold; the next one resumes it

    @property
    def active(self) -> bool:
        """Pending or running: the update has not ended yet."""
        return self in (UpdateState.PENDING, UpdateState.RUNNING)
