"""The daemon: start-up, the main loop, and shutdown in a fixed order.

Threads: the API server (an event loop, and worker threads for the routes that block), the
watchdog observer (records paths only), the ingestor (commits samples), APScheduler (only
wakes the main loop). The main thread decides, from the database, whether an update may
run, and supervises its worker process. Signal handlers only set a flag, which the main
loop polls.

The quiet period is timed on the monotonic clock from the moment the ingestor's commit
returned (the database's ``created_at`` is wall-clock time, and is only used for samples
queued before this start-up). When it will end, a one-off APScheduler job is set for that
moment and wakes the main loop, which starts the update at once.

Shutdown order: stop accepting API connections → stop the scheduler → stop the watcher →
let the ingestor finish its batch → (an update in progress was already cancelled by the main
loop, its staging folder removed) → close the database.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from tailord.daemon.api.context import ApiContext
from tailord.daemon.api.handlers import Api
from tailord.daemon.config import Config
from tailord.daemon.disk import disk_problem
from tailord.daemon.events import EventBus, SampleQueued, SampleRejected
from tailord.daemon.http.auth import Authorizer
from tailord.daemon.http.server import UnixHTTPServer, inherited_socket
from tailord.daemon.inbox.ingest import Ingestor
from tailord.daemon.inbox.watcher import PendingPaths, Watcher
from tailord.daemon.lock import lock_data_dir
from tailord.daemon.metrics import Metrics, Snapshot
from tailord.daemon.policy import Decision, decide
from tailord.daemon.startup import (
    Repair,
    check_backbone,
    check_data_dir,
    check_inbox,
    open_db,
    open_store,
    repair,
)
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.daemon.versions.serving import Serving
from tailord.storage.samples import counts, last_queued_at
from tailord.storage.states import SampleState, UpdateState

logger = logging.getLogger(__name__)

# How often the main loop looks at the signal flag while nothing wakes it. Not a delay on
# the update: every wake-up (ingest, timer, request) sets the event and ends the wait.
POLL_SECONDS = 0.2


class Daemon:
    """One running tailord; ``run()`` blocks until SIGTERM or SIGINT.

    The parts that need no I/O are made here; ``startup()`` opens the rest in dependency
    order, registering each one's stop on ``self._stack`` as it starts, so ``shutdown()``
    closes whatever was started, in reverse order (the documented one above).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.should_exit = False
        self._wake = threading.Event()
        self._manual = False
        self._failures = 0  # updates failed in a row: automatic ones back off
        self._last_failure_at: float | None = None  # monotonic
        # When the newest sample this process queued was committed (monotonic): the quiet
        # period counts from it. Set by the ingestor's thread; a float assignment is atomic.
        self._last_queued: float | None = None
        self._policy_reason = "starting"
        self._stack = contextlib.ExitStack()
        self.events = EventBus()
        self.serving = Serving(self.events)
        self.metrics = Metrics(self._metrics_snapshot)
        self.events.listen(self.metrics.on_event)
        self.pending = PendingPaths()
        self._ctx: ApiContext | None = None  # once started: what the API and metrics read
        # Why no update may run: start-up repair was refused by the disk (see startup.py).
        self._read_only: str | None = None
        self._repair: Callable[[], Repair] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        try:
            self.startup()
            self._main_loop()
        finally:
            self.shutdown()
        return 0

    def startup(self) -> None:
        cfg = self.config
        stack = self._stack
        check_data_dir(cfg.data_dir)  # one line if it is not a writable folder
        # Before anything reads or repairs the data directory: a second daemon must leave
        # the first one's update and staging alone. Released last, after the database.
        stack.callback(lock_data_dir(cfg.data_dir).release)
        check_inbox(cfg.inbox)
        check_backbone(cfg.model)  # now, not at the first update
        db = open_db(cfg)
        stack.callback(_stopping("database", db.close))
        store = open_store(cfg)
        repaired = repair(cfg, store, db)
        current = repaired.current
        self._read_only = repaired.read_only
        if self._read_only is not None:
            self._policy_reason = self._read_only  # status says so from the first request
        self.serving.load(store, current)
        history = History(store, db, self.serving, self.events, cfg.model, cfg.versions.keep)
        if self._read_only is None:
            history.start()
        self._repair = lambda: repair(cfg, store, db)
        self.updater = updater = Updater(
            cfg, db, store, history, self.events, lambda: self.should_exit
        )
        if updater.has_pending():
            self._manual = True  # a request accepted before a restart still runs

        ingestor = Ingestor(
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
        ingestor.start()
        stack.callback(_stopping("ingestor", ingestor.stop))
        watcher = Watcher(cfg.inbox, self.pending, on_recreated=ingestor.scan_now)
        watcher.start()
        stack.callback(_stopping("watcher", watcher.stop))
        queued = ingestor.scan_now()  # after the watcher starts, so nothing falls between

        self.scheduler = scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(
            self.wake, "interval", seconds=cfg.policy.check_seconds, id="check", coalesce=True
        )
        scheduler.add_job(
            ingestor.scan_now,
            "interval",
            seconds=cfg.ingest.rescan_seconds,
            id="rescan",
            coalesce=True,
        )
        scheduler.start()
        stack.callback(_stopping("scheduler", lambda: scheduler.shutdown(wait=False)))
        self._ctx = ctx = ApiContext(
            db=db,
            store=store,
            serving=self.serving,
            updater=updater,
            history=history,
            events=self.events,
            ingest=ingestor.stats,
            pending=self.pending,
            policy_reason=lambda: self._policy_reason,
            requested=self._on_requested,
            metrics=self.metrics,
        )
        # The socket opens last: a client that can connect finds every part ready.
        api = Api(ctx)
        server = UnixHTTPServer(
            cfg.socket,
            api,
            Authorizer(cfg.api.allowed_users, cfg.api.allowed_groups),
            cfg.api.max_body_bytes,
            listener=inherited_socket(),
            quick=api.quick,
            idle_timeout=cfg.api.idle_timeout,
        )
        server.start()
        stack.callback(_stopping("server", server.stop))
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
        self._stack.close()
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
            try:
                self._once()
            except Exception as exc:
                # A full or failing disk (or a bug) must not end the daemon: the API keeps
                # serving, and the next wake-up tries again after the failure back-off.
                self._failures += 1
                self._last_failure_at = time.monotonic()
                problem = disk_problem(exc, self.config.data_dir)
                if problem is None:
                    logger.exception("the main loop's step failed; trying again later")
                else:
                    logger.error("the main loop's step failed: %s; trying again later", problem)

    def _once(self) -> None:
        if self._read_only is not None and not self._leave_read_only():
            self._policy_reason = self._read_only
            return
        self.updater.record_unrecorded()
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

    def _leave_read_only(self) -> bool:
        """Retry start-up repair; True once it succeeded (updates may run again)."""
        assert self._repair is not None
        repaired = self._repair()
        if repaired.read_only is not None:
            self._read_only = repaired.read_only
            return False
        logger.warning("start-up repair succeeded; leaving read-only mode")
        self._read_only = None
        assert self._ctx is not None
        self._ctx.history.start()  # [versions] keep, skipped while read-only
        return True

    def _decide(self, manual: bool) -> Decision:
        assert self._ctx is not None
        with self._ctx.db.read() as session:
            by_label = counts(session).get(SampleState.QUEUED, {})
            last = last_queued_at(session)
        now = time.monotonic()
        arrived = self._last_queued
        if arrived is None and last is not None:
            # Only samples queued before this start-up: their wall-clock time is all there
            # is, carried over to the monotonic clock (a clock set back counts as no time).
            arrived = now - max(0.0, time.time() - last)
        return decide(
            self.config.policy,
            queued=sum(by_label.values()),
            last_queued_at=arrived,
            now=now,
            manual=manual,
            failures=self._failures,
            last_failure_at=self._last_failure_at,
        )

    def _note_outcome(self) -> None:
        last = self.updater.last_update()
        failed = last is not None and UpdateState(last.state) is UpdateState.FAILED
        if failed or self.updater.unrecorded:  # a failure the disk would not let us record
            self._failures += 1
            self._last_failure_at = time.monotonic()
        else:
            self._failures = 0

    def _wake_in(self, seconds: float) -> None:
        # No slack added: APScheduler waits on a monotonic timeout, and a wake-up that comes
        # a hair early (the wall clock slewed meanwhile) only finds a few milliseconds left
        # and sets the timer again.
        self.scheduler.add_job(
            self.wake,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=seconds),
            id="quiet",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def _on_requested(self) -> None:
        # The API accepted a manual update (its row exists): run it even below the threshold.
        self._manual = True
        self.wake()

    def _on_rejected(self, source: str, reason: str) -> None:
        # ``source`` is the path inside the inbox; ``name`` is what lands in .rejected/.
        self.events.publish(SampleRejected(source.rsplit("/", 1)[-1], source, reason))

    def _on_ingested(self, added: int) -> None:
        self._last_queued = time.monotonic()  # committed just now: the quiet period restarts
        self.events.publish(SampleQueued(added))
        self.wake()

    def _metrics_snapshot(self) -> Snapshot:
        ctx = self._ctx
        if ctx is None:
            return Snapshot()
        with ctx.db.read() as session:
            by_state = counts(session)
        served = self.serving.current
        stats = ctx.ingest
        return Snapshot(
            queued=by_state.get(SampleState.QUEUED, {}),
            learned=sum(by_state.get(SampleState.LEARNED, {}).values()),
            ingested=stats.ingested,
            duplicates=stats.duplicates,
            rejected=stats.rejected,
            waiting=len(self.pending),
            version=None if served is None else served.number,
            updating=ctx.updater.running is not None,
        )


def _stopping(part: str, stop: Callable[[], object]) -> Callable[[], None]:
    """``stop``, logged rather than raised: one part failing to stop must not keep the
    parts after it (the database last) from stopping."""

    def run() -> None:
        try:
            stop()
        except Exception:
            logger.exception("error while stopping the %s; continuing", part)

    return run
