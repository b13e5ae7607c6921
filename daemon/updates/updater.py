"""Running one update: its row taken (requested.py), its job handed to a worker (workers.py)
or run in the daemon (knn.py), the candidate published or rejected (outcome.py), its end
recorded and announced (endings.py); and what the API asks about updates."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select

from tailord.daemon.api import bodies
from tailord.daemon.config import Config
from tailord.daemon.disk import disk_problem
from tailord.daemon.events import EventBus, UpdateBegan, UpdateJudged, UpdateResumed
from tailord.daemon.updates import outcome, overrides, requested
from tailord.daemon.updates.dispatch import Dispatch
from tailord.daemon.updates.endings import Endings, wait_for_end, why
from tailord.daemon.updates.messages import Failure
from tailord.daemon.updates.resume import Resume
from tailord.daemon.updates.rows import Ending, describe
from tailord.daemon.updates.running import Running, StopRequest
from tailord.daemon.updates.selection import Selection
from tailord.daemon.updates.workers import Workers
from tailord.daemon.versions.history import History
from tailord.storage.db import Database
from tailord.storage.models import Update, UpdateState
from tailord.storage.versions import VersionStore

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # under the data dir: survives restarts, unlike staging/


class Updater:
    """Starts at most one update at a time and publishes what it produces."""

    def __init__(
        self,
        config: Config,
        db: Database,
        store: VersionStore,
        history: History,
        events: EventBus,
        should_stop: Callable[[], bool],
    ) -> None:
        self.config = config
        self.db = db
        self.store = store
        self.history = history  # publishes the candidates (and removes old versions)
        self.events = events
        self.should_stop = should_stop
        self.now_running = Running(config.update.epochs)
        self.endings = Endings(db, config.data_dir, events, self.now_running)
        self.dispatch = Dispatch(config, db, events, self.now_running, should_stop)
        # The update last cancelled, while no sample has arrived since (cancel.py): automatic
        # updates wait, so that the cancelled one does not start again by itself.
        self.held_by: int | None = self._cancelled_last()

    @property
    def running(self) -> int | None:
        """The running update's id."""
        return self.now_running.update_id

    @property
    def running_epochs(self) -> int:
        """The running update's own epochs (its params)."""
        return self.now_running.epochs

    @property
    def progress(self) -> bodies.Progress | None:
        """The running update's latest progress event."""
        return self.now_running.progress

    @property
    def unrecorded(self) -> dict[int, Ending]:
        """Endings the disk (full, failing) would not let us record yet."""
        return self.endings.unrecorded

    @property
    def workers(self) -> Workers:
        """The worker processes (none run for a k-NN head that learns in the daemon)."""
        return self.dispatch.workers

    @property
    def checkpoints(self) -> Path:
        return self.config.data_dir / CHECKPOINTS

    def run(
        self,
        reason: str,
        resume: Resume | None = None,
        *,
        from_base: bool = False,
        learn_queue: bool = True,
    ) -> int | None:
        """Run one update now; returns the new version number, or None if none was made.

        ``resume``: an expired update to continue (the same samples; see resume.py).
        ``from_base`` retrains from version 0 on every learned sample (a request's row may
        ask it too, and a changed model spec implies it); without ``learn_queue`` (forget)
        the queue is left for a later update and no pending request is taken over.
        """
        base = self.store.current_number()
        assert base is not None, "reconcile() runs before any update"
        self.record_unrecorded()
        # Before the worker reads the queue: a sample relabeled from now on may be learned
        # under its old label, so publishing leaves it queued (see mark_learned).
        read_at = time.time()
        claimed = requested.claim(
            self.db,
            self.config,
            base,
            reason,
            held_by=self.held_by,
            resume=resume,
            from_base=from_base,
            learn_queue=learn_queue,
            finish=self.endings.finish,
        )
        if claimed is None:
            return None
        update_id, selection, asked = claimed
        try:
            return self._run(update_id, base, reason, read_at, selection, asked, resume)
        finally:
            self.now_running.clear()
            self._cleanup()

    def _run(
        self,
        update_id: int,
        base: int,
        reason: str,
        read_at: float,
        selection: Selection,
        asked: bodies.UpdateRequest,
        resume: Resume | None,
    ) -> int | None:
        spec, params = overrides.split(self.config, asked)
        staging_name = f"update-{update_id}"
        try:
            # On a full disk even the folder cannot be made: the update fails, recorded below.
            staging = self.store.new_staging(staging_name)
        except OSError as exc:
            logger.error("update %d cannot start: %s", update_id, exc)
            self._failed(update_id, exc)
            return None
        job = self.dispatch.job(update_id, staging, base, selection, spec, params, self.checkpoints)
        logger.info(
            "update %d started (%s), from version %d",
            update_id,
            reason,
            0 if selection.relearn else base,
        )
        self.now_running.begin(update_id, params.epochs)
        self.events.publish(UpdateBegan(update_id, base, reason, params.epochs))
        if resume is not None:
            self.events.publish(UpdateResumed(update_id, resume.update_id))
        try:
            result = self.dispatch.run(job)
            if result is None:
                self._stopped(update_id)
                return None
            if isinstance(result, Failure):
                logger.error("update %d failed: %s", update_id, result.message)
                self.endings.finish(update_id, Ending(UpdateState.FAILED, error=result.message))
                self._drop_checkpoints()
                return None
            self._drop_checkpoints()
            # The candidate is written and judged; publishing (or rejecting) comes next.
            self.events.publish(UpdateJudged(update_id, result.promote, result.gate))
            if not result.promote:
                self.endings.finish(update_id, outcome.reject(self.db, update_id, result))
                return None
            return outcome.publish(
                self.history,
                update_id,
                staging_name,
                base,
                read_at,
                result,
                from_base=selection.relearn,
                announce=self.endings.announce,
            )
        except Exception as exc:
            if disk_problem(exc, self.config.data_dir) is None:
                logger.exception("update %d failed while publishing", update_id)
            else:  # no traceback: the disk, not the code, and the line says what to do
                logger.error("update %d failed: %s", update_id, why(exc, self.config.data_dir))
            self._failed(update_id, exc)
            return None

    def _failed(self, update_id: int, exc: BaseException) -> None:
        error = why(exc, self.config.data_dir)
        self.endings.finish(update_id, Ending(UpdateState.FAILED, error=error))

    def _cleanup(self) -> None:
        try:
            self.store.clear_staging()
        except OSError as exc:  # an I/O error: the next update, or the next start, retries
            logger.error("could not clear staging/: %s", exc)
        self.workers.reap()

    def _stopped(self, update_id: int) -> None:
        stop = self.now_running.stop_as or StopRequest(
            Ending(UpdateState.INTERRUPTED, error="cancelled at shutdown")
        )
        if not stop.keep_checkpoint:  # first: whoever sees the row ended finds it gone
            self._drop_checkpoints()
        self.endings.finish(update_id, replace(stop.ending, metrics=self.workers.stopped))

    def record_unrecorded(self) -> None:
        """Record the endings the disk refused so far, oldest first; stops at the first
        refusal (the disk is still full). The main loop calls it on each wake-up."""
        self.endings.record_unrecorded()

    def stop_running(self, update_id: int, stop: StopRequest) -> bool:
        """Ask the running update ``update_id`` to stop; it ends as ``stop.ending`` says.

        The worker checkpoints at its next mini-batch and stops; ``keep_checkpoint`` keeps it.
        False when ``update_id`` is not the one running. Callable from any thread.
        """
        return self.now_running.stop(update_id, stop)

    def _cancelled_last(self) -> int | None:
        with self.db.read() as session:
            row = session.scalar(select(Update).order_by(Update.id.desc()).limit(1))
            return row.id if row is not None and row.state is UpdateState.CANCELLED else None

    def release(self) -> None:
        """A new sample arrived (or was requeued): automatic updates may run again."""
        self.held_by = None

    def _drop_checkpoints(self) -> None:
        # A finished update's checkpoint can never be resumed: its samples are no longer queued.
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    # -- what the API asks -----------------------------------------------------------------

    def request(
        self,
        asked: bodies.UpdateRequest | None = None,
        *,
        from_base: bool = False,
        deferred: bool = False,
    ) -> bodies.UpdateInfo:
        """Accept a manual request: the update that will serve it, pending or running.

        ``asked`` holds the parameters this update is to run with (the configured ones for
        the keys it leaves out); :class:`overrides.BadParameters` names one out of bounds.
        It joins an update already pending or running as :func:`requested.accept` says, or
        raises :class:`requested.ParametersDiffer` or :class:`requested.NothingQueued`.
        """
        wanted = requested.wanted(self.config, asked)
        with self.db.write() as session:
            row, new = requested.accept(
                session, self.config, self.store, wanted, from_base=from_base, deferred=deferred
            )
            if new:
                self.held_by = None  # asked for: the hold after a cancel ends
            return self._describe(row)

    def has_pending(self, *, deferred: bool = True) -> bool:
        """Whether a request is pending; without ``deferred``, one to run now."""
        return requested.has_pending(self.db, deferred=deferred)

    def last_update(self) -> bodies.UpdateInfo | None:
        with self.db.read() as session:
            row = session.scalar(select(Update).order_by(Update.id.desc()).limit(1))
            return None if row is None else self._describe(row)

    def describe(self, update_id: int) -> bodies.UpdateInfo | None:
        with self.db.read() as session:
            row = session.get(Update, update_id)
            return None if row is None else self._describe(row)

    def wait(self, update_id: int, timeout: float) -> bodies.UpdateInfo | None:
        """Block until update ``update_id`` has finished or ``timeout`` passed; its state."""
        return wait_for_end(self.events, self.describe, update_id, timeout)

    def _describe(self, row: Update) -> bodies.UpdateInfo:
        running = self.running == row.id and row.state == UpdateState.RUNNING
        return describe(row, self.progress if running else None)
