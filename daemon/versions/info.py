"""What the version history answers, as typed structs (``versions/history.py`` returns them).

No torch and no SQLAlchemy here: clients may decode these.
"""

from __future__ import annotations

import msgspec

from tailord.daemon.updates.info import UpdateMetrics


class VersionEntry(msgspec.Struct, frozen=True):
    """One version ever published, as ``tailorctl versions`` lists it."""

    version: int
    parent: int | None
    created_at: float
    sample_count: int
    labels: list[str]
    metrics: UpdateMetrics
    pinned: bool
    current: bool
    removed: bool  # its folder was removed; the row stays


class RollbackResult(msgspec.Struct, frozen=True):
    version: int  # current now
    previous: int | None  # current before
    changed: bool  # False when it was current already


class PinResult(msgspec.Struct, frozen=True):
    version: int
    pinned: bool


class ImportResult(msgspec.Struct, frozen=True):
    version: int  # the new version the imported model became
    parent: int | None


class ManifestView(msgspec.Struct, frozen=True):
    """The manifest fields the history reads back; a manifest is written by ``publish``."""

    labels: list[str] = msgspec.field(default_factory=list)
    metrics: UpdateMetrics = msgspec.field(default_factory=UpdateMetrics)
