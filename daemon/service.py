"""The daemon: start-up, the main loop, and shutdown in a fixed order.

Threads: the API server (an event loop, and worker threads for the routes that block), the
watchdog observer (records paths only), the ingestor (commits samples), APScheduler (only
wakes the main loop). The main thread decides, from the database, whether an update may
run, and supervises its worker process.

The machine's conditions (idle, power, window, schedule: daemon/conditions/) are measured on
an APScheduler job every ``sample_seconds``; the same job guards a running automatic update,
expiring it when one fails (daemon/updates/guard.py), and the next update resumes it.

On each wake-up the main loop runs the forgets the API handed it (daemon/handoff.py), then
the pacer's step (daemon/pacer.py): whether an update may run now, and running it. Signal
handlers (daemon/signals.py) only set a flag, which the main loop polls.

Shutdown order: stop accepting API connections → stop the scheduler → stop the watcher →
let the ingestor finish its batch → (an update in progress was already cancelled by the main
loop, its staging folder removed) → close the database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tailord.daemon.api import bodies, reads
from tailord.daemon.api.context import ApiContext
from tailord.daemon.api.handlers import Api
from tailord.daemon.claim import claim_directories
from tailord.daemon.clockwatch import ClockWatch
from tailord.daemon.conditions.check import Check
from tailord.daemon.conditions.monitor import Monitor
from tailord.daemon.config import Config
from tailord.daemon.disk import disk_problem
from tailord.daemon.errors import TailordError
from tailord.daemon.events import EventBus, SampleRejected
from tailord.daemon.handoff import Handoff
from tailord.daemon.inbox.watcher import PendingPaths
from tailord.daemon.metrics import Metrics, Snapshot
from tailord.daemon.notify import Notifier
from tailord.daemon.pacer import Pacer
from tailord.daemon.reload import reload_and_log
from tailord.daemon.signals import Signals
from tailord.daemon.startup import Repair, open_db, open_store, repair
from tailord.daemon.updates.forget import Forgetter
from tailord.daemon.updates.guard import Guard
from tailord.daemon.updates.selection import spec_change
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.daemon.versions.serving import Serving
from tailord.daemon.wiring import (
    scheduler_alive,
    start_inbox,
    start_scheduler,
    start_server,
    stopping,
)
from tailord.storage.db import Database
from tailord.storage.versions import VersionStore

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

    def __init__(self, config: Config, load: Callable[[], Config] | None = None) -> None:
        self.config = config
        self._load = load or (lambda: config)  # SIGHUP reads the configuration again
        self.signals = Signals()
        # systemd's notify socket and watchdog (no-ops outside systemd); the parts whose
        # threads must be alive for the watchdog to be pinged are added as they start.
        self.notifier = Notifier.from_environ()
        self._alive: dict[str, Callable[[], bool]] = {}
        self._wake = threading.Event()
        self._pacer: Pacer | None = None  # once started: when updates run, and why not
        self._stack = contextlib.ExitStack()
        self.events = EventBus()
        self.serving = Serving(self.events)
        self.metrics = Metrics(self._metrics_snapshot)
        self.events.listen(self.metrics.on_event)
        self.pending = PendingPaths()
        self._ctx: ApiContext | None = None  # once started: what the API and metrics read
        # Forget requests from API threads, run by the main loop between updates.
        self._forgets: Handoff[bodies.ForgetRequest, bodies.ForgetResult]
        self._forgets = Handoff(self.wake, "forget")
        self._forgetter: Forgetter | None = None
        self._clock_watch: ClockWatch | None = None  # once the scheduler runs

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        self.signals.install()
        try:
            self.startup()
            assert self._forgetter is not None
            self._forgetter.finish_interrupted()  # on the main thread, as every forget runs
            self._main_loop()
        finally:
            self.shutdown()
        return 0

    def _open_state(self) -> tuple[Database, VersionStore, Repair]:
        """The database and the version folders, repaired; the current version loaded."""
        cfg = self.config
        db = open_db(cfg)
        self._stack.callback(stopping("database", db.close))
        store = open_store(cfg)
        repaired = repair(cfg, store, db)
        self.serving.load(store, repaired.current)
        with db.read() as session:
            change = spec_change(session, repaired.current, cfg.model)
        if change is not None:
            logger.warning("%s", change)
        return db, store, repaired

    def startup(self) -> None:
        cfg = self.config
        stack = self._stack
        claim_directories(cfg, stack)
        db, store, repaired = self._open_state()
        history = History(store, db, self.serving, self.events, cfg.model, cfg.versions.keep)
        if repaired.read_only is None:
            history.start()
        self.updater = updater = Updater(cfg, db, store, history, self.events, self._tend)
        self._forgetter = Forgetter(db, store, history, updater, self.events, cfg.model)
        self.monitor = Monitor(cfg.policy)
        self.guard = Guard(
            cfg.policy,
            self.monitor,
            updater,
            lambda: (os.getpid(), *updater.workers.pids()),
            self.wake,
        )
        self._pacer = pacer = Pacer(
            policy=lambda: self.config.policy,
            db=db,
            store=store,
            history=history,
            updater=updater,
            monitor=self.monitor,
            guard=self.guard,
            events=self.events,
            repair=lambda: repair(cfg, store, db),
            read_only=repaired.read_only,
            wake=self.wake,
            wake_in=self._wake_in,
            report=lambda: self.notifier.status(self._status_line()),
        )

        ingestor, watcher = start_inbox(
            cfg, db, self.pending, stack, queued=pacer.queued, rejected=self._on_rejected
        )
        self._alive["ingestor"] = ingestor.alive
        self._alive["watcher"] = watcher.alive
        queued = ingestor.scan_now()  # after the watcher starts, so nothing falls between

        self.scheduler = scheduler = start_scheduler(
            cfg,
            stack,
            wake=self.wake,
            rescan=ingestor.scan_now,
            monitor=self.monitor,
            guard=self.guard,
        )
        self._clock_watch = ClockWatch(scheduler, self.wake)
        self._alive["scheduler"] = lambda: scheduler_alive(scheduler)
        self._ctx = ctx = ApiContext(
            db=db,
            store=store,
            serving=self.serving,
            updater=updater,
            history=history,
            events=self.events,
            ingest=ingestor.stats,
            pending=self.pending,
            policy_reason=lambda: pacer.reason,
            conditions=pacer.live_conditions,
            requested=pacer.requested,
            queued=pacer.queued,
            metrics=self.metrics,
            ingestor=ingestor,
            forget=self._forgets.ask,
        )
        # The socket opens last: a client that can connect finds every part ready.
        server = start_server(cfg, Api(ctx), stack)
        self._alive["API loop"] = server.alive
        self.wake()
        logger.info(
            "tailord serving version %d on %s; inbox %s (%d files waiting); data in %s",
            repaired.current,
            cfg.socket,
            cfg.inbox,
            queued,
            cfg.data_dir,
        )
        # Only now: the socket accepts, reconcile is done and the current version is loaded.
        self.notifier.ready(self._status_line())

    def shutdown(self) -> None:
        self.notifier.stopping()
        logger.info("shutting down")
        self._forgets.refuse(TailordError("tailord is stopping; forget again once it runs"))
        self.events.close()  # ends /v1/events streams, so their connections close
        self._stack.close()
        logger.info("stopped")

    @property
    def should_exit(self) -> bool:
        """Whether a stop was asked for (SIGTERM, SIGINT, or set by whoever runs the loop)."""
        return self.signals.should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self.signals.should_exit = value

    def _tend(self) -> bool:
        """Between two steps of the main loop (and while an update runs): a reload asked
        for, the watchdog's ping. Returns whether to stop, as ``should_stop`` does."""
        if self.signals.take_reload():
            self.notifier.reloading()
            old = self.config.policy
            self.config = reload_and_log(self.config, self._load)
            if self.config.policy.check_seconds != old.check_seconds:
                self.scheduler.reschedule_job(
                    "check", trigger="interval", seconds=self.config.policy.check_seconds
                )
            self.notifier.reloaded()
            self.wake()
        if self._clock_watch is not None:
            self._clock_watch.check()  # a wall-clock step would stall the scheduler's jobs
        self.notifier.ping_if_due(self._alive)
        return self.should_exit

    @property
    def _policy_reason(self) -> str:
        return "starting" if self._pacer is None else self._pacer.reason

    @property
    def _conditions(self) -> tuple[Check, ...]:
        """The latest decision's conditions, for status."""
        return () if self._pacer is None else self._pacer.conditions

    def _status_line(self) -> str:
        served = self.serving.current
        version = "no version" if served is None else f"version {served.number}"
        return f"serving {version}; {self._policy_reason}"

    # -- the main loop ---------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the main loop to re-check the policy (called by the scheduler and ingestor)."""
        self._wake.set()

    def _main_loop(self) -> None:
        while not self._tend():
            if not self._wake.wait(POLL_SECONDS):
                continue
            self._wake.clear()
            try:
                self._once()
            except Exception as exc:
                # A full or failing disk (or a bug) must not end the daemon: the API keeps
                # serving, and the next wake-up tries again after the failure back-off.
                assert self._pacer is not None
                self._pacer.failed()
                problem = disk_problem(exc, self.config.data_dir)
                if problem is None:
                    logger.exception("the main loop's step failed; trying again later")
                else:
                    logger.error("the main loop's step failed: %s; trying again later", problem)

    def _once(self) -> None:
        assert self._forgetter is not None
        assert self._pacer is not None
        self._forgets.serve(self._forgetter.forget)
        self._pacer.step()

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

    def _on_rejected(self, source: str, reason: str) -> None:
        # ``source`` is the path inside the inbox; ``name`` is what lands in .rejected/.
        self.events.publish(SampleRejected(source.rsplit("/", 1)[-1], source, reason))

    def _metrics_snapshot(self) -> Snapshot:
        if self._ctx is None:
            return Snapshot()
        return reads.metrics_snapshot(self._ctx, self._conditions)
