"""Prometheus metrics for ``GET /metrics``, on a registry of this daemon's own.

A private :class:`CollectorRegistry` (not prometheus-client's global one) keeps two daemons
in one process (tests) apart. Queue sizes, ingest counts and the current version are read
when scraped, from the same sources as ``/v1/status``; update durations and request
latencies are observed as they happen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tailord.daemon.events import Event, UpdateBegan, UpdateFinished

# API requests are mostly sub-millisecond; predictions and ?wait=true run longer.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0)
UPDATE_BUCKETS = (0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass(frozen=True)
class Snapshot:
    """What the daemon reports at scrape time."""

    queued: dict[str, int] = field(default_factory=dict)  # label -> queued samples
    learned: int = 0
    ingested: int = 0
    duplicates: int = 0
    rejected: int = 0
    waiting: int = 0  # inbox files seen, not yet read
    version: int | None = None
    updating: bool = False
    conditions: dict[str, bool] = field(default_factory=dict)  # policy condition -> holds


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        queue = GaugeMetricFamily(
            "tailord_queue_samples", "Samples queued, not yet learned", labels=["label"]
        )
        for label, n in sorted(snap.queued.items()):
            queue.add_metric([label], n)
        yield queue
        yield GaugeMetricFamily("tailord_learned_samples", "Samples learned", value=snap.learned)
        ingest = CounterMetricFamily(
            "tailord_ingest_files",
            "Inbox files read since start-up, by outcome",
            labels=["outcome"],
        )
        ingest.add_metric(["ingested"], snap.ingested)
        ingest.add_metric(["duplicate"], snap.duplicates)
        ingest.add_metric(["rejected"], snap.rejected)
        yield ingest
        yield GaugeMetricFamily(
            "tailord_inbox_waiting_files", "Inbox files seen, not yet read", value=snap.waiting
        )
        if snap.version is not None:
            yield GaugeMetricFamily(
                "tailord_current_version", "The version being served", value=snap.version
            )
        yield GaugeMetricFamily(
            "tailord_update_running", "1 while an update runs", value=int(snap.updating)
        )
        conditions = GaugeMetricFamily(
            "tailord_policy_condition",
            "1 while a configured policy condition holds, else 0 (see docs/policy.md)",
            labels=["name"],
        )
        for name, ok in sorted(snap.conditions.items()):  # at most 7 fixed names
            conditions.add_metric([name], int(ok))
        yield conditions


class Metrics:
    """The daemon's metrics; :meth:`on_event` is an :class:`EventBus` listener."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "tailord_api_request_seconds",
            "Time to answer an API request (until the body starts, for streams)",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.updates = Histogram(
            "tailord_update_duration_seconds",
            "Wall time of finished updates, by how they ended",
            ["state"],
            buckets=UPDATE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(snapshot))
        self._lock = threading.Lock()
        self._began: dict[int, float] = {}
        self._request_children: dict[tuple[str, str, int], Any] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:  # labels() takes a lock and builds a key: once per combination
            child = self._request_children[key] = self.requests.labels(method, route, str(status))
        child.observe(seconds)

    def on_event(self, event: Event) -> None:
        data = event.data
        with self._lock:
            if isinstance(data, UpdateBegan):
                self._began[data.update] = time.monotonic()
            elif isinstance(data, UpdateFinished):
                began = self._began.pop(data.update, None)
                if began is not None:
                    self.updates.labels(str(data.state)).observe(time.monotonic() - began)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
