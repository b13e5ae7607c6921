"""What the history reads back from a version's manifest, as a typed struct.

The history's answers (a version's entry, rollback, pin and import results) are API bodies
and live in ``tailord.daemon.api.bodies``; this view never crosses the API.
"""

from __future__ import annotations

import msgspec

from tailord.daemon.api import bodies


class ManifestView(msgspec.Struct, frozen=True):
    """The manifest fields the history reads back; a manifest is written by ``publish``."""

    labels: list[str] = msgspec.field(default_factory=list)
    metrics: bodies.UpdateMetrics = msgspec.field(default_factory=bodies.UpdateMetrics)
    update: int | None = None  # the update that made it; none for the base and imports
