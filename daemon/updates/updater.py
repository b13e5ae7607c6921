"""Running one update: its row (rows.py), its worker (workers.py), publishing or rejecting
the candidate; and what the API asks about updates."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec
from sqlalchemy import select
from sqlalchemy import update as sa_update

from tailord.daemon.api import bodies
from tailord.daemon.config import Config
from tailord.daemon.disk import disk_problem
from tailord.daemon.errors import TailordError
from tailord.daemon.events import (
    EventBus,
    UpdateBegan,
    UpdateFinished,
    UpdateJudged,
    UpdateResumed,
)
from tailord.daemon.updates import overrides
from tailord.daemon.updates.knn import learns_in_daemon, run_here
from tailord.daemon.updates.messages import Failure, Result, WorkerJob
from tailord.daemon.updates.progress import ProgressLog
from tailord.daemon.updates.resume import Resume
from tailord.daemon.updates.rows import Ending, describe, record
from tailord.daemon.updates.selection import Selection, choose, spec_change
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


class ParametersDiffer(TailordError):
    """An update is already pending or running with other parameters; wait for it or cancel it."""


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
        self.running_epochs = config.update.epochs  # the running update's own (its params)
        self._progress_log: ProgressLog | None = None  # the running update's
        self._stop_as: StopRequest | None = None  # why the running update is being stopped
        # The update last cancelled, while no sample has arrived since (cancel.py): automatic
        # updates wait, so that the cancelled one does not start again by itself.
        self.held_by: int | None = self._cancelled_last()
        # A vector k-NN head learns in the daemon (knn.py): no worker to keep warm for it.
        self.in_daemon = learns_in_daemon(config.model)
        self.workers = Workers(
            config.worker.prewarm and not self.in_daemon,
            self._stopping,
            shutting_down=should_stop,
        )
        # Endings the disk (full, failing) would not let us record: recorded once it does.
        self.unrecorded: dict[int, Ending] = {}

    def _stopping(self) -> bool:
        return self.should_stop() or self._stop_as is not None

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
        claimed = self._claim(
            reason, base, resume=resume, from_base=from_base, learn_queue=learn_queue
        )
        if claimed is None:
            return None
        update_id, selection, asked = claimed
        try:
            return self._run(update_id, base, reason, read_at, selection, asked, resume)
        finally:
            self.running = None
            self._stop_as = None
            self._progress_log = None
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
            self._finish(update_id, Ending(UpdateState.FAILED, error=_why(exc, self.config)))
            return None
        job = WorkerJob(
            update_id=update_id,
            database=self.config.database,
            data_dir=self.config.data_dir,
            staging=staging,
            base_version=base,
            up_to_id=selection.up_to_id,
            relearn=selection.relearn,
            spec=spec,
            params=params,
            threads=self.config.worker.threads,
            nice=self.config.worker.nice,
            log_level=logging.getLogger("tailord").getEffectiveLevel(),
            gate=self.config.gate,
            checkpoints=self.checkpoints,
        )
        logger.info(
            "update %d started (%s), from version %d",
            update_id,
            reason,
            0 if selection.relearn else base,
        )
        self.running, self.running_epochs = update_id, params.epochs
        self.events.publish(UpdateBegan(update_id, base, reason, params.epochs))
        if resume is not None:
            self.events.publish(UpdateResumed(update_id, resume.update_id))
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
            return self._publish(
                update_id, staging_name, base, read_at, result, from_base=selection.relearn
            )
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

    def _claim(
        self,
        reason: str,
        base: int,
        *,
        resume: Resume | None,
        from_base: bool,
        learn_queue: bool,
    ) -> tuple[int, Selection, bodies.UpdateRequest] | None:
        """The update to run now, marked running: its id, which samples it learns from which
        head (``selection.py``) and its parameters; None when there is none to run."""
        with self.db.write() as session:
            # A request accepted through the API already has its row (and id): run that one.
            row = (
                session.scalar(
                    select(Update).where(Update.state == UpdateState.PENDING).order_by(Update.id)
                )
                if learn_queue
                else None
            )
            relearn = (
                from_base
                or (row is not None and row.from_base)
                or spec_change(session, base, self.config.model) is not None
            )
            selection = choose(
                session, base_version=base, from_base=relearn, learn_queue=learn_queue
            )
            if resume is not None and selection is not None and not selection.relearn:
                # The expired update's samples, no more: its checkpoint is of those.
                selection = msgspec.structs.replace(
                    selection, up_to_id=min(selection.up_to_id, resume.up_to_id)
                )
            if selection is not None and row is not None:
                row.state = UpdateState.RUNNING
                row.started_at = time.time()
                row.base_version = base
                row.from_base = relearn
            # A cancel holds automatic updates back, not a forget's rebuild (no learn_queue).
            elif selection is not None and (self.held_by is None or not learn_queue):
                row = Update(reason=reason, base_version=base, from_base=relearn)
                session.add(row)
                session.flush()
            if row is not None and row.params is None:  # automatic: the configured ones
                row.params = self._configured()
            if row is not None and selection is not None:
                row.up_to_id = selection.up_to_id
                row.resumed_from = None if resume is None else resume.update_id
            update_id = None if row is None else row.id
            asked = None if row is None else self._asked(row)
        if selection is None:
            if update_id is not None:  # a request whose samples were learned meanwhile
                self._finish(
                    update_id,
                    Ending(
                        UpdateState.FAILED,
                        error="nothing was queued when the update was due to start",
                    ),
                )
            return None
        if update_id is None or asked is None:
            logger.info("update %s was cancelled: no update until a new sample", self.held_by)
            return None
        return update_id, selection, asked

    def _stopped(self, update_id: int) -> None:
        stop = self._stop_as or StopRequest(
            Ending(UpdateState.INTERRUPTED, error="cancelled at shutdown")
        )
        if not stop.keep_checkpoint:  # first: whoever sees the row ended finds it gone
            self._drop_checkpoints()
        self._finish(update_id, replace(stop.ending, metrics=self.workers.stopped))

    def _publish(
        self,
        update_id: int,
        staging_name: str,
        base: int,
        read_at: float,
        result: Result,
        *,
        from_base: bool,
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
                from_base=from_base,
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
            if self.in_daemon:
                return run_here(job, self.db, progress.add, self._stopping)
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
        # After the commit: whoever hears of it (``?wait=true``) reads the finished row. And
        # no longer running: a client that asks /v1/status as it hears must not find it so.
        if self.running == update_id:
            self.running = None
            self._progress_log = None
        self.events.publish(UpdateFinished(update_id, ending.state, ending.version, ending.error))

    def stop_running(self, update_id: int, stop: StopRequest) -> bool:
        """Ask the running update ``update_id`` to stop; it ends as ``stop.ending`` says.

        The worker checkpoints at its next mini-batch and stops; ``keep_checkpoint`` keeps it.
        False when ``update_id`` is not the one running. Callable from any thread.
        """
        if self.running != update_id:
            return False
        self._stop_as = stop
        return True

    def _cancelled_last(self) -> int | None:
        with self.db.read() as session:
            row = session.scalar(select(Update).order_by(Update.id.desc()).limit(1))
            return row.id if row is not None and row.state is UpdateState.CANCELLED else None

    def release(self) -> None:
        """A new sample arrived (or was requeued): automatic updates may run again."""
        self.held_by = None

    def last_update(self) -> bodies.UpdateInfo | None:
        with self.db.read() as session:
            row = session.scalar(select(Update).order_by(Update.id.desc()).limit(1))
            return None if row is None else self._describe(row)

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
        A request while one is pending or running joins it rather than queueing another
        (the main loop re-checks the policy after every update anyway), unless it asks for
        other parameters: :class:`ParametersDiffer`. One from base joins a pending one (which
        then runs from base) but not a running one from the current version: it waits behind
        it. Raises :class:`NothingQueued` when there is nothing to learn.
        """
        wanted = None
        if asked is not None and overrides.given(asked):
            wanted = overrides.resolve(self.config, asked)
        with self.db.write() as session:
            active = session.scalar(
                select(Update).where(Update.state.in_(_ACTIVE)).order_by(Update.id).limit(1)
            )
            if active is not None and wanted is not None and self._asked(active) != wanted:
                raise ParametersDiffer(
                    f"update {active.id} is already {active.state} with other parameters "
                    f"({_differences(self._asked(active), wanted)}); wait for it to end "
                    f"(`tailorctl update --show {active.id}`) or cancel it "
                    f"(`tailorctl update --cancel {active.id}`), then ask again"
                )
            if from_base and active is not None and not active.from_base:
                if active.state == UpdateState.PENDING:
                    active.from_base = True
                else:
                    active = session.scalar(
                        select(Update).where(Update.state == UpdateState.PENDING).limit(1)
                    )
                    if active is not None:
                        active.from_base = True
            if active is not None and not deferred:
                active.deferred = False  # asked to run now: it no longer waits
            if active is None:
                current = self.store.current_number() or 0
                if choose(session, base_version=current, from_base=from_base) is None:
                    raise NothingQueued(
                        "nothing is learned or queued, so retraining from base would learn "
                        "nothing; drop samples into the inbox first"
                        if from_base
                        else None
                    )
                active = Update(
                    reason=("requested from base" if from_base else "requested")
                    + (", deferred" if deferred else ""),
                    deferred=deferred,
                    base_version=current,
                    state=UpdateState.PENDING,
                    params=self._configured() if wanted is None else _stored(wanted),
                    from_base=from_base,
                )
                session.add(active)
                session.flush()
                self.held_by = None  # asked for: the hold after a cancel ends
            return self._describe(active)

    def _configured(self) -> dict[str, object]:
        """A row's ``params`` when no request gave any: the configured ones."""
        return _stored(overrides.resolve(self.config, bodies.UpdateRequest()))

    def _asked(self, row: Update) -> bodies.UpdateRequest:
        """The parameters ``row`` runs with (the configured ones for a row from before)."""
        if row.params is None:
            return overrides.resolve(self.config, bodies.UpdateRequest())
        return msgspec.convert(row.params, bodies.UpdateRequest)

    def has_pending(self, *, deferred: bool = True) -> bool:
        """Whether a request is pending; without ``deferred``, one to run now."""
        query = select(Update.id).where(Update.state == UpdateState.PENDING)
        if not deferred:
            query = query.where(Update.deferred.is_(False))
        with self.db.read() as session:
            return session.scalar(query.limit(1)) is not None

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


def _stored(resolved: bodies.UpdateRequest) -> dict[str, object]:
    stored: dict[str, object] = msgspec.to_builtins(resolved)
    return stored


def _differences(have: bodies.UpdateRequest, want: bodies.UpdateRequest) -> str:
    """``epochs 10, not 3`` for each key where ``want`` differs from ``have``."""
    old, new = msgspec.structs.asdict(have), msgspec.structs.asdict(want)
    return ", ".join(f"{key} {old[key]}, not {new[key]}" for key in new if old[key] != new[key])


def _why(exc: BaseException, config: Config) -> str:
    """An update's error line: the disk condition in words when it is one."""
    return disk_problem(exc, config.data_dir) or f"{exc.__class__.__name__}: {exc}"
