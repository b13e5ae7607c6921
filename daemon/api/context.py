"""What the API reads and drives: the daemon's services, handed over as one typed object."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tailord.daemon.api import bodies
from tailord.daemon.conditions.check import Check
from tailord.daemon.events import EventBus
from tailord.daemon.inbox.ingest import Ingestor
from tailord.daemon.inbox.stats import IngestStats
from tailord.daemon.inbox.watcher import PendingPaths
from tailord.daemon.metrics import Metrics
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.daemon.versions.serving import Serving
from tailord.storage.db import Database
from tailord.storage.versions import VersionStore


@dataclass(frozen=True)
class ApiContext:
    """The parts of a running daemon the API talks to (no more: it never sees the daemon)."""

    db: Database
    store: VersionStore
    serving: Serving
    updater: Updater
    history: History
    events: EventBus
    ingest: IngestStats
    pending: PendingPaths
    # The main loop's latest policy decision, and how to tell it an update was requested:
    # both belong to the lifecycle, which owns the loop.
    policy_reason: Callable[[], str]
    requested: Callable[[], None]
    metrics: Metrics | None = None
    # Samples were queued by the API (requeued, added): n of them; the lifecycle restarts
    # the quiet period, ends a hold after a cancel and wakes its loop, as for the inbox.
    queued: Callable[[int], None] = lambda n: None
    ingestor: Ingestor | None = None  # POST /v1/samples goes through its checks and commit
    # Runs a forget on the main loop's thread and waits for it (None: forget is not offered).
    forget: Callable[[bodies.ForgetRequest], bodies.ForgetResult] | None = None
    # The policy's conditions as the main loop last decided (names, ok, detail).
    conditions: Callable[[], Sequence[Check]] = tuple
