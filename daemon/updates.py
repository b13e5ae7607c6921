"""Running one update: the row, the worker process, publishing the candidate.

The update runs in a spawned process (a fresh interpreter: no inherited threads or locks,
its own torch thread count and a lowered priority); this side only supervises it.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from tailord.daemon.config import Config
from tailord.daemon.events import EventBus
from tailord.daemon.history import collect_garbage
from tailord.daemon.publish import publish
from tailord.daemon.serving import Serving
from tailord.daemon.worker import WorkerJob, main
from tailord.storage.db import Database
from tailord.storage.models import Sample, SampleState, Update, UpdateState
from tailord.storage.versions import VersionStore

logger = logging.getLogger(__name__)


class Updater:
    """Starts at most one update at a time and publishes what it produces."""

    def __init__(
        self,
        config: Config,
        db: Database,
        store: VersionStore,
        serving: Serving,
        events: EventBus,
        should_stop: Callable[[], bool],
    ) -> None:
        self.config = config
        self.db = db
        self.store = store
        self.serving = serving
        self.events = events
        self.should_stop = should_stop
        self.running: int | None = None
        self.progress: dict[str, Any] | None = None

    def run(self, reason: str) -> int | None:
        """Run one update now; returns the new version number, or None if none was made."""
        base = self.store.current_number()
        assert base is not None, "reconcile() runs before any update"
        with self.db.write() as session:
            up_to_id = session.scalar(
                select(func.max(Sample.id)).where(Sample.state == SampleState.QUEUED)
            )
            if up_to_id is None:
                return None
            row = Update(reason=reason, base_version=base)
            session.add(row)
            session.flush()
            update_id = row.id
        staging_name = f"update-{update_id}"
        staging = self.store.new_staging(staging_name)
        job = WorkerJob(
            update_id=update_id,
            database=self.config.database,
            data_dir=self.config.data_dir,
            staging=staging,
            base_version=base,
            up_to_id=up_to_id,
            spec=self.config.model.to_dict(),
            params=self.config.update.to_dict(),
            threads=self.config.worker.threads,
            nice=self.config.worker.nice,
            log_level=logging.getLogger("tailord").getEffectiveLevel(),
        )
        logger.info("update %d started (%s), from version %d", update_id, reason, base)
        self.running = update_id
        self.events.publish("update.began", update=update_id, base_version=base, reason=reason)
        try:
            result = self._supervise(job)
            if result is None:
                self._finish(update_id, UpdateState.INTERRUPTED, error="cancelled at shutdown")
                return None
            if "error" in result:
                logger.error("update %d failed: %s", update_id, result["error"])
                self._finish(update_id, UpdateState.FAILED, error=result["error"])
                return None
            number = publish(
                self.store,
                self.db,
                self.serving,  # swapped in by publish, under the lock that orders flips
                staging_name=staging_name,
                parent=base,
                manifest={
                    "spec": result["spec"],
                    "labels": result["labels"],
                    "sample_count": result["sample_count"],
                    "samples_in_update": result["new_samples"],
                    "update": update_id,
                    "metrics": {"seconds": result["seconds"], "replayed": result["replayed"]},
                },
                sample_ids=result["sample_ids"],
            )
            self._finish(update_id, UpdateState.SUCCEEDED, version=number, result=result)
            collect_garbage(self.store, self.db, self.config.versions.keep)
            self.events.publish("version.changed", version=number, parent=base)
            logger.info("update %d published version %d", update_id, number)
            return number
        except Exception as exc:
            logger.exception("update %d failed while publishing", update_id)
            self._finish(update_id, UpdateState.FAILED, error=f"{exc.__class__.__name__}: {exc}")
            return None
        finally:
            self.running = None
            self.progress = None
            self.store.clear_staging()

    def _supervise(self, job: WorkerJob) -> dict[str, Any] | None:
        ctx = multiprocessing.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        process = ctx.Process(target=main, args=(job, send), name=f"tailord-update-{job.update_id}")
        process.start()
        send.close()  # the child holds the only writer: EOF means it is gone
        outcome: dict[str, Any] | None = None
        try:
            while outcome is None:
                if self.should_stop():
                    logger.info("stopping update %d", job.update_id)
                    process.terminate()
                    return None
                if not receive.poll(0.2):
                    if not process.is_alive() and not receive.poll(0):
                        code = process.exitcode
                        return {"error": f"the worker process exited with code {code}"}
                    continue
                try:
                    message = receive.recv()
                except EOFError:
                    return {"error": f"the worker process exited with code {process.exitcode}"}
                if message["type"] == "progress":
                    self.progress = message["event"]
                    self.events.publish("update.progress", update=job.update_id, **self.progress)
                elif message["type"] == "result":
                    outcome = message["result"]
                else:
                    logger.debug("worker traceback:\n%s", message.get("traceback"))
                    return {"error": message["message"]}
            return outcome
        finally:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
            receive.close()

    def _finish(
        self,
        update_id: int,
        state: UpdateState,
        *,
        version: int | None = None,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        with self.db.write() as session:
            row = session.get_one(Update, update_id)
            row.state = state
            row.finished_at = time.time()
            self.events.publish(
                "update.finished", update=update_id, state=str(state), version=version, error=error
            )
            row.version = version
            row.error = error
            if result is not None:
                row.sample_count = int(result["new_samples"])
                row.metrics = {"seconds": result["seconds"], "replayed": result["replayed"]}

    def last_update(self) -> dict[str, Any] | None:
        with self.db.read() as session:
            row = session.scalar(select(Update).order_by(Update.id.desc()).limit(1))
            if row is None:
                return None
            return {
                "id": row.id,
                "state": str(row.state),
                "reason": row.reason,
                "started_at": row.started_at,
                "finished_at": row.finished_at,
                "base_version": row.base_version,
                "version": row.version,
                "samples": row.sample_count,
                "error": row.error,
            }
