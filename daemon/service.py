"""The daemon: start-up, the main loop, and shutdown in a fixed order.

Threads: the API server (one thread per connection), the watchdog observer (records paths
only), the ingestor (commits samples), APScheduler (only wakes the main loop). The main
thread decides, from the database, whether an update may run, and supervises its worker
process. Signal handlers only set a flag, which the main loop polls.

Shutdown order: stop accepting API connections → stop the scheduler → stop the watcher →
let the ingestor finish its batch → (an update in progress was already cancelled by the main
loop, its staging folder removed) → close the database.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from tailord.daemon.api.handlers import Api
from tailord.daemon.config import Config
from tailord.daemon.events import EventBus
from tailord.daemon.http.auth import Authorizer
from tailord.daemon.http.server import UnixHTTPServer, inherited_socket
from tailord.daemon.inbox.ingest import Ingestor
from tailord.daemon.inbox.watcher import PendingPaths, Watcher
from tailord.daemon.metrics import Metrics, Snapshot
from tailord.daemon.policy import Decision, decide
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History, collect_garbage
from tailord.daemon.versions.publish import ensure_base
from tailord.daemon.versions.reconcile import reconcile
from tailord.daemon.versions.serving import Served, Serving
from tailord.storage.db import Database, open_database
from tailord.storage.models import Version
from tailord.storage.samples import counts, last_queued_at, list_samples
from tailord.storage.versions import VersionStore

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2


class Daemon:
    """One running tailord; ``run()`` blocks until SIGTERM or SIGINT."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.should_exit = False
        self._wake = threading.Event()
        self._manual = False
        self._failures = 0  # updates failed in a row: automatic ones back off
        self._last_failure_at: float | None = None
        self._policy_reason = "starting"
        self.events = EventBus()
        self.serving = Serving(self.events)
        self.metrics = Metrics(self._metrics_snapshot)
        self.events.listen(self.metrics.on_event)
        self.pending = PendingPaths()
        self.db: Database | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        self.startup()
        try:
            self._main_loop()
        finally:
            self.shutdown()
        return 0

    def startup(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        cfg.inbox.mkdir(parents=True, exist_ok=True)
        self.db = db = open_database(cfg.database)
        self.store = store = VersionStore(cfg.data_dir)
        current = reconcile(store, db)
        if current is None:
            current = ensure_base(store, db, cfg.model, cfg.versions.base_file)
        self.serving.load(store, current)
        self.history = History(store, db, self.serving, self.events, cfg.model, cfg.versions.keep)
        collect_garbage(store, db, cfg.versions.keep)
        self.updater = Updater(cfg, db, store, self.serving, self.events, lambda: self.should_exit)

        if self.updater.has_pending():
            self._manual = True  # a request accepted before a restart still runs

        self.ingestor = Ingestor(
            cfg.inbox,
            db,
            cfg.ingest,
            cfg.model.dim,
            self.pending,
            self._on_ingested,
            input_kind=cfg.model.input_kind,
            on_rejected=self._on_rejected,
            task=cfg.model.task,
        )
        self.ingestor.start()
        self.watcher = Watcher(cfg.inbox, self.pending)
        self.watcher.start()
        queued = self.ingestor.scan_now()  # after the watcher starts, so nothing falls between

        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.scheduler.add_job(
            self.wake, "interval", seconds=cfg.policy.check_seconds, id="check", coalesce=True
        )
        self.scheduler.add_job(
            self.ingestor.scan_now,
            "interval",
            seconds=cfg.ingest.rescan_seconds,
            id="rescan",
            coalesce=True,
        )
        self.scheduler.start()
        # The socket opens last: a client that can connect finds every part ready.
        api = Api(self, self.metrics)
        self.server = UnixHTTPServer(
            cfg.socket,
            api,
            Authorizer(cfg.api.allowed_users, cfg.api.allowed_groups),
            cfg.api.max_body_bytes,
            listener=inherited_socket(),
            quick=api.quick,
            idle_timeout=cfg.api.idle_timeout,
        )
        self.server.start()
        self.wake()
        logger.info(
            "tailord serving version %d on %s; inbox %s (%d files waiting); data in %s",
            current,
            cfg.socket,
            cfg.inbox,
            queued,
            cfg.data_dir,
        )

    def shutdown(self) -> None:
        logger.info("shutting down")
        self.events.close()  # ends /v1/events streams, so their connections close
        # Each part exists only if start-up got that far.
        steps = [
            ("server", "stop", {}),
            ("scheduler", "shutdown", {"wait": False}),
            ("watcher", "stop", {}),
            ("ingestor", "stop", {}),
        ]
        for part, method, kwargs in steps:
            if not hasattr(self, part):
                continue
            try:
                getattr(getattr(self, part), method)(**kwargs)
            except Exception:
                logger.exception("error while stopping the %s; continuing", part)
        if self.db is not None:
            self.db.close()
        logger.info("stopped")

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only set a flag: the main loop polls it. Anything more (locks, I/O) could deadlock
        # against the code the signal interrupted.
        self.should_exit = True

    # -- the main loop ---------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the main loop to re-check the policy (called by the scheduler and ingestor)."""
        self._wake.set()

    def _main_loop(self) -> None:
        while not self.should_exit:
            if not self._wake.wait(POLL_SECONDS):
                continue
            self._wake.clear()
            manual, self._manual = self._manual, False
            decision = self._decide(manual)
            self._policy_reason = decision.reason
            if decision.run:
                self.updater.run(decision.reason)
                self._note_outcome()
                self.wake()  # samples may have arrived meanwhile
            elif manual and self.updater.has_pending():
                self.updater.run(decision.reason)  # ends the request: nothing to learn
            elif decision.retry_in is not None:
                self._wake_in(decision.retry_in)

    def _decide(self, manual: bool) -> Decision:
        assert self.db is not None
        with self.db.read() as session:
            by_label = counts(session).get("queued", {})
            last = last_queued_at(session)
        return decide(
            self.config.policy,
            queued=sum(by_label.values()),
            last_queued_at=last,
            now=time.time(),
            manual=manual,
            failures=self._failures,
            last_failure_at=self._last_failure_at,
        )

    def _note_outcome(self) -> None:
        last = self.updater.last_update()
        if last is not None and last["state"] == "failed":
            self._failures += 1
            self._last_failure_at = time.time()
        else:
            self._failures = 0

    def _wake_in(self, seconds: float) -> None:
        self.scheduler.add_job(
            self.wake,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=seconds + 0.05),
            id="quiet",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def _on_rejected(self, source: str, reason: str) -> None:
        # ``source`` is the path inside the inbox; ``name`` is what lands in .rejected/.
        self.events.publish(
            "sample.rejected", name=source.rsplit("/", 1)[-1], source=source, reason=reason
        )

    def _on_ingested(self, added: int) -> None:
        self.events.publish("sample.queued", count=added)
        self.wake()

    # -- what the API asks -----------------------------------------------------------------

    def served(self) -> Served | None:
        return self.serving.current

    def request_update(self) -> dict[str, Any]:
        """Accept a manual update (raises NothingQueued); its row exists before we answer."""
        accepted = self.updater.request()
        self._manual = True
        self.wake()
        return accepted

    def update_info(self, update_id: int) -> dict[str, Any] | None:
        return self.updater.describe(update_id)

    def wait_update(self, update_id: int, timeout: float) -> dict[str, Any] | None:
        return self.updater.wait(update_id, timeout)

    def versions(self) -> list[dict[str, Any]]:
        assert self.db is not None
        current = self.store.current_number()
        with self.db.read() as session:
            rows = session.scalars(select(Version).order_by(Version.number))
            return [_version_info(row, current) for row in rows]

    def version_info(self, number: int) -> dict[str, Any] | None:
        assert self.db is not None
        with self.db.read() as session:
            row = session.get(Version, number)
            if row is None:
                return None
            return {
                **_version_info(row, self.store.current_number()),
                "manifest": row.manifest,
            }

    def samples(
        self, *, state: str | None, label: str | None, after_id: int | None, limit: int
    ) -> dict[str, Any]:
        assert self.db is not None
        with self.db.read() as session:
            page = list_samples(session, state=state, label=label, after_id=after_id, limit=limit)
            by_state = counts(session)
        return {
            "counts": by_state,
            "samples": page,
            "next_after": page[-1]["id"] if len(page) == limit else None,
        }

    def _metrics_snapshot(self) -> Snapshot:
        if self.db is None or not hasattr(self, "ingestor"):
            return Snapshot()
        with self.db.read() as session:
            by_state = counts(session)
        served = self.serving.current
        stats = self.ingestor.stats
        return Snapshot(
            queued=by_state.get("queued", {}),
            learned=sum(by_state.get("learned", {}).values()),
            ingested=stats.ingested,
            duplicates=stats.duplicates,
            rejected=stats.rejected,
            waiting=len(self.pending),
            version=None if served is None else served.number,
            updating=self.updater.running is not None,
        )

    def rollback(self, number: int | None) -> dict[str, Any]:
        return self.history.rollback(number)

    def pin(self, number: int, pinned: bool) -> dict[str, Any]:
        return self.history.pin(number, pinned)

    def import_base(self, data: bytes) -> dict[str, Any]:
        return self.history.import_base(data)

    def version_history(self) -> list[dict[str, Any]]:
        return self.history.listing()

    def status(self) -> dict[str, Any]:
        assert self.db is not None
        with self.db.read() as session:
            by_state = counts(session)
        served = self.serving.current
        stats = self.ingestor.stats
        return {
            "state": "updating" if self.updater.running is not None else "idle",
            "version": None if served is None else served.number,
            "queued": sum(by_state.get("queued", {}).values()),
            "queue": by_state.get("queued", {}),  # queued samples by label
            "samples": by_state,
            "policy": self._policy_reason,
            "update": None
            if self.updater.running is None
            else {"id": self.updater.running, "progress": self.updater.progress},
            "last_update": self.updater.last_update(),
            "load_error": self.serving.last_error,
            "ingest": {
                "ingested": stats.ingested,
                "duplicates": stats.duplicates,
                "relabeled": stats.relabeled,
                "rejected": stats.rejected,
                "waiting": len(self.pending),
                "error": stats.last_error,
                "backpressure": stats.backpressure,
                "last_commit_at": stats.last_commit_at,
            },
        }


def _version_info(row: Version, current: int | None) -> dict[str, Any]:
    manifest = row.manifest
    return {
        "number": row.number,
        "parent": row.parent,
        "created_at": row.created_at,
        "sample_count": row.sample_count,
        "current": row.number == current,
        "labels": list(manifest.get("labels", [])),  # type: ignore[call-overload]
        "metrics": dict(manifest.get("metrics", {})),  # type: ignore[call-overload]
        "update": manifest.get("update"),
        "pinned": row.pinned,
        "removed": row.removed_at is not None,
    }
