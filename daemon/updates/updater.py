"""Running one update: its row (rows.py), its worker (workers.py), publishing or rejecting
the candidate; and what the API asks about updates."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy import update as sa_update

from tailord.daemon.api import bodies
from tailord.daemon.config import Config
from tailord.daemon.disk import disk_problem
from tailord.daemon.errors import TailordError
from tailord.daemon.events import EventBus, UpdateBegan, UpdateFinished, UpdateJudged
from tailord.daemon.updates.messages import Failure, Result, WorkerJob
from tailord.daemon.updates.progress import ProgressLog
from tailord.daemon.updates.rows import Ending, describe, record
from tailord.daemon.updates.workers import Workers
from tailord.daemon.versions.history import History
from tailord.daemon.versions.publish import ManifestFields
from tailord.storage.db import Database
from tailord.storage.models import Sample, SampleState, Update, UpdateState
from tailord.storage.versions import VersionStore

logger = logging.getLogger(__name__)

_ACTIVE = (UpdateState.PENDING, UpdateState.RUNNING)
CHECKPOINTS = "checkpoints"  # under the data dir: survives restarts, unlike staging/


@dataclass(frozen=True)
class StopRequest:
    """Why a running update is asked to stop (a cancel, an expiry), and what it leaves."""

    ending: Ending  # how the update's row records the stop
    keep_checkpoint: bool = True  # False: the next update starts over rather than resumes


class NothingQueued(TailordError):
    """Nothing is queued, so an update would learn nothing; drop samples into the inbox first."""


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
        self.running: int | None = None
        self._progress_log: ProgressLog | None = None  # the running update's
        self._stop_as: StopRequest | None = None  # why the running update is being stopped
        # Endings the disk (full, failing) would not let us record: recorded once it does.
        self.unrecorded: dict[int, Ending] = {}
        self.workers = Workers(
            config.worker.prewarm, lambda: should_stop() or self._stop_as is not None
        )

    def run(self, reason: str) -> int | None:
        """Run one update now; returns the new version number, or None if none was made."""
        base = self.store.current_number()
        assert base is not None, "reconcile() runs before any update"
        self.record_unrecorded()
        # Before the worker reads the queue: a sample relabeled from now on may be learned
        # under its old label, so publishing leaves it queued (see mark_learned).
        read_at = time.time()
        with self.db.write() as session:
            up_to_id = session.scalar(
                select(func.max(Sample.id)).where(Sample.state == SampleState.QUEUED)
            )
            # A request accepted through the API already has its row (and id): run that one.
            row = session.scalar(
                select(Update).where(Update.state == UpdateState.PENDING).order_by(Update.id)
            )
            if up_to_id is not None and row is not None:
                row.state = UpdateState.RUNNING
                row.started_at = time.time()
                row.base_version = base
            elif up_to_id is not None:
                row = Update(reason=reason, base_version=base)
                session.add(row)
                session.flush()
            update_id = None if row is None else row.id
        if up_to_id is None:
            if update_id is not None:  # a request whose samples were learned meanwhile
                self._finish(
                    update_id,
                    Ending(
                        UpdateState.FAILED,
                        error="nothing was queued when the update was due to start",
                    ),
                )
            return None
        assert update_id is not None
        try:
            return self._run(update_id, base, reason, read_at, up_to_id)
        finally:
            self.running = None
            self._stop_as = None
            self._progress_log = None
            self._cleanup()

    def _run(
        self, update_id: int, base: int, reason: str, read_at: float, up_to_id: int
    ) -> int | None:
        staging_name = f"update-{update_id}"
        try:
            # On a full disk even the folder cannot be made: the update fails, recorded below.
            staging = self.store.new_staging(staging_name)
        except OSError as exc:
            logger.error("update %d cannot start: %s", update_id, exc)
            self._finish(update_id, Ending(UpdateState.FAILED, error=_why(exc, self.config)))
            return None
        job = WorkerJob(
            update_id=update_id,
            database=self.config.database,
            data_dir=self.config.data_dir,
            staging=staging,
            base_version=base,
            up_to_id=up_to_id,
            spec=self.config.model,
            params=self.config.update,
            threads=self.config.worker.threads,
            nice=self.config.worker.nice,
            log_level=logging.getLogger("tailord").getEffectiveLevel(),
            gate=self.config.gate,
            checkpoints=self.checkpoints,
        )
        logger.info("update %d started (%s), from version %d", update_id, reason, base)
        self.running = update_id
        self.events.publish(UpdateBegan(update_id, base, reason, self.config.update.epochs))
        try:
            result = self._supervise(job)
            if result is None:
                self._stopped(update_id)
                return None
            if isinstance(result, Failure):
                logger.error("update %d failed: %s", update_id, result.message)
                self._finish(update_id, Ending(UpdateState.FAILED, error=result.message))
                self._drop_checkpoints()
                return None
            self._drop_checkpoints()
            # The candidate is written and judged; publishing (or rejecting) comes next.
            self.events.publish(UpdateJudged(update_id, result.promote, result.gate))
            if not result.promote:
                self._reject(update_id, result)
                return None
            return self._publish(update_id, staging_name, base, read_at, result)
        except Exception as exc:
            if disk_problem(exc, self.config.data_dir) is None:
                logger.exception("update %d failed while publishing", update_id)
            else:  # no traceback: the disk, not the code, and the line says what to do
                logger.error("update %d failed: %s", update_id, _why(exc, self.config))
            self._finish(update_id, Ending(UpdateState.FAILED, error=_why(exc, self.config)))
            return None

    def _cleanup(self) -> None:
        try:
            self.store.clear_staging()
        except OSError as exc:  # an I/O error: the next update, or the next start, retries
            logger.error("could not clear staging/: %s", exc)
        self.workers.reap()

    def _stopped(self, update_id: int) -> None:
        stop = self._stop_as or StopRequest(
            Ending(UpdateState.INTERRUPTED, error="cancelled at shutdown")
        )
        self._finish(update_id, stop.ending)
        if not stop.keep_checkpoint:
            self._drop_checkpoints()

    def _publish(
        self, update_id: int, staging_name: str, base: int, read_at: float, result: Result
    ) -> int:
        number = self.history.publish(
            staging_name=staging_name,
            parent=base,
            manifest=ManifestFields(
                spec=result.spec,
                labels=result.labels,
                sample_count=result.sample_count,
                samples_in_update=result.new_samples,
                update=update_id,
                metrics=result.metrics,
                gate=result.gate,
            ),
            sample_ids=result.sample_ids,
            read_at=read_at,
            # In the publish's own transaction: whoever sees the new version also finds its
            # update succeeded, with the gate's figures.
            record=lambda session, number: record(
                session, update_id, Ending(UpdateState.SUCCEEDED, number, result=result)
            ),
            announce=lambda number: self._announce(
                update_id, Ending(UpdateState.SUCCEEDED, number)
            ),
        )
        logger.info("update %d published version %d", update_id, number)
        return number

    def _supervise(self, job: WorkerJob) -> Result | Failure | None:
        progress = ProgressLog(self.db, self.events, job.update_id)
        self._progress_log = progress
        try:
            return self.workers.run(job, progress.add)
        finally:
            try:
                progress.flush()
            except Exception:  # informational: never in the way of ending the worker
                logger.exception("could not store update %d's last progress events", job.update_id)

    def _finish(self, update_id: int, ending: Ending) -> None:
        """Record how the update ended; on a full or failing disk, keep it to record later.

        Recording a failure is what a full disk most often refuses: raising here would take
        the main loop (and the daemon) down, which is worse than a row recorded late.
        """
        self.unrecorded[update_id] = ending
        self.record_unrecorded()

    def record_unrecorded(self) -> None:
        """Record the endings the disk refused so far, oldest first; stops at the first
        refusal (the disk is still full). The main loop calls it on each wake-up."""
        for update_id, ending in list(self.unrecorded.items()):
            try:
                with self.db.write() as session:
                    record(session, update_id, ending)
            except Exception as exc:
                problem = disk_problem(exc, self.config.data_dir)
                if problem is None:
                    raise
                logger.error(
                    "cannot record that update %d ended %s (%s); retrying when the daemon "
                    "next looks, and a restart records it as interrupted",
                    update_id,
                    ending.state.value,
                    problem,
                )
                return
            del self.unrecorded[update_id]
            self._announce(update_id, ending)

    def _announce(self, update_id: int, ending: Ending) -> None:
        # After the commit: whoever hears of it (``?wait=true``) reads the finished row.
        self.events.publish(UpdateFinished(update_id, ending.state, ending.version, ending.error))

    def stop_running(self, update_id: int, stop: StopRequest) -> bool:
        """Ask the running update ``update_id`` to stop; it ends as ``stop.ending`` says.

        The worker stops at its next mini-batch (having checkpointed the epochs it finished).
        False when ``update_id`` is not the one running. Callable from any thread.
        """
        if self.running != update_id:
            return False
        self._stop_as = stop
        return True

    def last_update(self) -> bodies.UpdateInfo | None:
        with self.db.read() as session:
            row = session.scalar(select(Update).order_by(Update.id.desc()).limit(1))
            return None if row is None else self._describe(row)

    # -- what the API asks -----------------------------------------------------------------

    def request(self) -> bodies.UpdateInfo:
        """Accept a manual request: the update that will serve it, pending or running.

        A request while one is pending or running joins it rather than queueing another:
        the main loop re-checks the policy after every update anyway. Raises
        :class:`NothingQueued` when there is nothing to learn.
        """
        with self.db.write() as session:
            active = session.scalar(
                select(Update).where(Update.state.in_(_ACTIVE)).order_by(Update.id).limit(1)
            )
            if active is None:
                queued = session.scalar(
                    select(func.count())
                    .select_from(Sample)
                    .where(Sample.state == SampleState.QUEUED)
                )
                if not queued:
                    raise NothingQueued()
                active = Update(
                    reason="requested",
                    base_version=self.store.current_number() or 0,
                    state=UpdateState.PENDING,
                )
                session.add(active)
                session.flush()
            return self._describe(active)

    def has_pending(self) -> bool:
        with self.db.read() as session:
            return (
                session.scalar(
                    select(Update.id).where(Update.state == UpdateState.PENDING).limit(1)
                )
                is not None
            )

    def describe(self, update_id: int) -> bodies.UpdateInfo | None:
        with self.db.read() as session:
            row = session.get(Update, update_id)
            return None if row is None else self._describe(row)

    def wait(self, update_id: int, timeout: float) -> bodies.UpdateInfo | None:
        """Block until update ``update_id`` has finished or ``timeout`` passed; its state."""
        subscription = self.events.subscribe()  # before reading, so no finish slips between
        try:
            deadline = time.monotonic() + timeout
            while True:
                info = self.describe(update_id)
                if info is None or not info.active:
                    return info
                left = deadline - time.monotonic()
                if left <= 0:
                    return info
                # Re-read on its finish event, and each second anyway: the bus drops the
                # oldest events of a slow subscriber (progress events come by the hundred).
                reread_at = min(deadline, time.monotonic() + 1.0)
                while (wait := reread_at - time.monotonic()) > 0:
                    event = subscription.get(timeout=wait)
                    if subscription.closed:
                        return self.describe(update_id)  # the daemon is stopping
                    if (
                        event is not None
                        and isinstance(event.data, UpdateFinished)
                        and event.data.update == update_id
                    ):
                        break
        finally:
            subscription.close()

    def _describe(self, row: Update) -> bodies.UpdateInfo:
        running = self.running == row.id and row.state == UpdateState.RUNNING
        return describe(row, self.progress if running else None)

    @property
    def progress(self) -> bodies.Progress | None:
        """The running update's latest progress event."""
        log = self._progress_log
        return log.latest if log is not None else None

    @property
    def checkpoints(self) -> Path:
        return self.config.data_dir / CHECKPOINTS

    def _drop_checkpoints(self) -> None:
        # A finished update's checkpoint can never be resumed: its samples are no longer queued.
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    def _reject(self, update_id: int, result: Result) -> None:
        reason = result.gate.reason
        logger.warning("update %d rejected by the gate: %s", update_id, reason)
        with self.db.write() as session:
            # Kept, not learned: left queued they would start the same failing update again.
            ids = result.sample_ids
            for start in range(0, len(ids), 500):  # SQLite caps bound parameters
                session.execute(
                    sa_update(Sample)
                    .where(Sample.id.in_(ids[start : start + 500]))
                    .values(state=SampleState.REJECTED)
                )
        self._finish(
            update_id, Ending(UpdateState.REJECTED, error=f"gate: {reason}", result=result)
        )


def _why(exc: BaseException, config: Config) -> str:
    """An update's error line: the disk condition in words when it is one."""
    return disk_problem(exc, config.data_dir) or f"{exc.__class__.__name__}: {exc}"
