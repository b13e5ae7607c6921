"""Starting the daemon's threaded parts from the configuration: the inbox (ingestor and
watcher), the scheduler and its jobs, the API server.

Each function pushes the part's stop on the lifecycle's ``ExitStack`` as soon as the part
has started, so a start-up that fails later still stops it, in reverse order (the shutdown
order documented in daemon/service.py). A stop that fails is logged, not raised: the parts
after it (the database last) must still stop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC

from apscheduler.schedulers.background import BackgroundScheduler

from tailord.daemon.api.handlers import Api
from tailord.daemon.conditions.monitor import Monitor
from tailord.daemon.config import Config
from tailord.daemon.http.auth import Authorizer
from tailord.daemon.http.limits import Limits
from tailord.daemon.http.server import UnixHTTPServer, inherited_socket
from tailord.daemon.inbox.ingest import Ingestor
from tailord.daemon.inbox.watcher import PendingPaths, Watcher
from tailord.daemon.updates.guard import Guard, add_policy_jobs
from tailord.storage.db import Database

logger = logging.getLogger(__name__)


def start_inbox(
    cfg: Config,
    db: Database,
    pending: PendingPaths,
    stack: contextlib.ExitStack,
    *,
    queued: Callable[[int], None],
    rejected: Callable[[str, str], None],
) -> tuple[Ingestor, Watcher]:
    """The ingestor, then the watcher that feeds it ``pending`` paths."""
    ingestor = Ingestor(
        cfg.inbox,
        db,
        cfg.ingest,
        cfg.model.dim,
        pending,
        queued,
        input_kind=cfg.model.input_kind,
        on_rejected=rejected,
        task=cfg.model.task,
    )
    ingestor.start()
    stack.callback(stopping("ingestor", ingestor.stop))
    watcher = Watcher(cfg.inbox, pending, on_recreated=ingestor.scan_now)
    watcher.start()
    stack.callback(stopping("watcher", watcher.stop))
    return ingestor, watcher


def start_scheduler(
    cfg: Config,
    stack: contextlib.ExitStack,
    *,
    wake: Callable[[], None],
    rescan: Callable[[], object],
    monitor: Monitor,
    guard: Guard,
) -> BackgroundScheduler:
    """APScheduler, whose jobs only wake the main loop (the periodic check, the policy's
    timers), measure the conditions and guard an update, and rescan the inbox."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(wake, "interval", seconds=cfg.policy.check_seconds, id="check", coalesce=True)
    scheduler.add_job(
        rescan, "interval", seconds=cfg.ingest.rescan_seconds, id="rescan", coalesce=True
    )
    add_policy_jobs(scheduler, cfg.policy, monitor, guard, wake)
    scheduler.start()
    stack.callback(stopping("scheduler", lambda: scheduler.shutdown(wait=False)))
    return scheduler


def scheduler_alive(scheduler: BackgroundScheduler) -> bool:
    # APScheduler 3 keeps its thread private; a scheduler that is running without it
    # would never wake the main loop again.
    thread = getattr(scheduler, "_thread", None)
    return bool(scheduler.running) and isinstance(thread, threading.Thread) and thread.is_alive()


def start_server(cfg: Config, api: Api, stack: contextlib.ExitStack) -> UnixHTTPServer:
    """The API's socket (systemd's, when it handed one over), accepting from now on."""
    server = UnixHTTPServer(
        cfg.socket,
        api,
        Authorizer(cfg.api.allowed_users, cfg.api.allowed_groups),
        cfg.api.max_body_bytes,
        listener=inherited_socket(),
        quick=api.quick,
        idle_timeout=cfg.api.idle_timeout,
        limits=Limits(
            max_connections=cfg.api.max_connections,
            header_timeout=cfg.api.header_timeout,
            body_timeout=cfg.api.body_timeout,
            max_pending_body_bytes=cfg.api.max_pending_body_bytes,
        ),
    )
    server.start()
    stack.callback(stopping("server", server.stop))
    return server


def stopping(part: str, stop: Callable[[], object]) -> Callable[[], None]:
    """``stop``, logged rather than raised: one part failing to stop must not keep the
    parts after it (the database last) from stopping."""

    def run() -> None:
        try:
            stop()
        except Exception:
            logger.exception("error while stopping the %s; continuing", part)

    return run
