"""An update's job dispatched: to a worker process (workers.py) or, for a vector k-NN head,
run in the daemon itself (knn.py); its progress events logged as they come (progress.py).

Either way the job is the same :class:`WorkerJob` and the answer the same: a Result, a
Failure, or None when it was stopped (a stop asked of the running update, or the daemon's
shutdown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from tailord.daemon.config import Config
from tailord.daemon.events import EventBus
from tailord.daemon.updates.knn import learns_in_daemon, run_here
from tailord.daemon.updates.messages import Failure, Result, WorkerJob
from tailord.daemon.updates.progress import ProgressLog
from tailord.daemon.updates.running import Running
from tailord.daemon.updates.selection import Selection
from tailord.daemon.updates.workers import Workers
from tailord.storage.db import Database
from tailord.trainer.spec import ModelSpec, UpdateParams

logger = logging.getLogger(__name__)


class Dispatch:
    """Runs jobs where the model spec wants them, and keeps a worker warm for the next."""

    def __init__(
        self,
        config: Config,
        db: Database,
        events: EventBus,
        running: Running,
        should_stop: Callable[[], bool],
    ) -> None:
        self.config, self.db, self.events, self.running = config, db, events, running
        self.should_stop = should_stop
        # A vector k-NN head learns in the daemon (knn.py): no worker to keep warm for it.
        self.in_daemon = learns_in_daemon(config.model)
        self.workers = Workers(
            config.worker.prewarm and not self.in_daemon,
            self.stopping,
            shutting_down=should_stop,
        )

    def stopping(self) -> bool:
        """Whether the running job is to stop (at its next mini-batch)."""
        return self.should_stop() or self.running.stop_as is not None

    def job(
        self,
        update_id: int,
        staging: Path,
        base: int,
        selection: Selection,
        spec: ModelSpec,
        params: UpdateParams,
        checkpoints: Path,
    ) -> WorkerJob:
        config = self.config
        return WorkerJob(
            update_id=update_id,
            database=config.database,
            data_dir=config.data_dir,
            staging=staging,
            base_version=base,
            up_to_id=selection.up_to_id,
            relearn=selection.relearn,
            spec=spec,
            params=params,
            threads=config.worker.threads,
            nice=config.worker.nice,
            log_level=logging.getLogger("tailord").getEffectiveLevel(),
            gate=config.gate,
            checkpoints=checkpoints,
        )

    def run(self, job: WorkerJob) -> Result | Failure | None:
        """Run ``job`` to its end; its progress is the running update's from now on."""
        progress = ProgressLog(self.db, self.events, job.update_id)
        self.running.log = progress
        try:
            if self.in_daemon:
                return run_here(job, self.db, progress.add, self.stopping)
            return self.workers.run(job, progress.add)
        finally:
            try:
                progress.flush()
            except Exception:  # informational: never in the way of ending the worker
                logger.exception("could not store update %d's last progress events", job.update_id)
