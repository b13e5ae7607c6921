"""The update worker processes: at most one spare, prewarmed, and one running a job.

A worker is a spawned process (a fresh interpreter: no inherited threads or locks, its own
torch thread count and a lowered priority); see worker.py for its side. This side starts
one, hands it a job, relays its messages while watching for a stop, and reaps it.

A stop (an expiry, a cancel, the daemon's shutdown) is a SIGTERM: the worker finishes its
mini-batch, checkpoints there and answers :class:`Stopped` with its cost so far, which
:meth:`Workers.run` waits for, so that the checkpoint is whole (or, for a cancel, can be
dropped) once it returns. A stop also starts the next spare at once (with ``prewarm``) while
the worker checkpoints, so that an expired update's resume finds a worker with torch loaded
rather than paying its start-up.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from tailord.daemon.api import bodies
from tailord.daemon.updates.messages import (
    Failure,
    Progress,
    Ready,
    Result,
    Stopped,
    WorkerJob,
    receive,
    send,
)

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # how often a running job looks at should_stop
STOP_WAIT_SECONDS = 10.0  # how long a SIGTERMed worker may take to checkpoint and exit
DIED_JOIN_SECONDS = 5.0  # how long a worker whose pipe closed may take to exit


class Workers:
    """``should_stop``: stop the running job; ``shutting_down``: the daemon is exiting (so
    no spare is started)."""

    def __init__(
        self,
        prewarm: bool,
        should_stop: Callable[[], bool],
        shutting_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self.keep_spare = prewarm
        self.should_stop, self.shutting_down = should_stop, shutting_down
        self._spare: tuple[BaseProcess, Connection] | None = None
        self._ended: BaseProcess | None = None  # the last job's process, until it is reaped
        # The cost a stopped job reported (None: it sent none, or it was killed).
        self.stopped: bodies.UpdateMetrics | None = None
        if prewarm:
            self.prewarm()

    def prewarm(self) -> None:
        """Start a spare worker now, so the next job skips interpreter and torch start-up."""
        if self._spare is not None and self._spare[0].is_alive():
            return
        self._spare = _spawn()

    def pids(self) -> list[int]:
        """The worker processes' ids (running and spare): their CPU time is tailord's own."""
        found = [p.pid for p in (self._ended, self._spare and self._spare[0]) if p is not None]
        return [pid for pid in found if pid is not None]

    def wait_warm(self, timeout: float) -> bool:
        """Wait until the spare worker has loaded torch; False if there is none or late."""
        if self._spare is None or not self._spare[1].poll(timeout):
            return False
        try:
            return isinstance(receive(self._spare[1]), Ready)
        except EOFError:
            return False

    def run(
        self, job: WorkerJob, on_progress: Callable[[bodies.Progress], None]
    ) -> Result | Failure | None:
        """Run ``job`` in a worker: its :class:`Result`, a :class:`Failure`, or None if
        stopped.

        Progress events go to ``on_progress`` as they come. The process is left to
        :meth:`reap`: once its result is sent it has nothing more to write.
        """
        spare, self._spare = self._spare, None
        process, pipe = spare if spare is not None and spare[0].is_alive() else _spawn()
        self._ended, self.stopped = process, None
        try:
            send(pipe, job)
            while True:
                if self.should_stop():
                    self._stop(job.update_id, process, pipe, on_progress)
                    return None
                if not pipe.poll(POLL_SECONDS):
                    if not process.is_alive() and not pipe.poll(0):
                        return None if self.should_stop() else _died(process)
                    continue
                try:
                    message = receive(pipe)
                except EOFError:  # killed because it was asked to stop: a stop, not a death
                    return None if self.should_stop() else _died(process)
                if isinstance(message, Progress):
                    on_progress(message.event)
                elif isinstance(message, Stopped):
                    return self._stopped_by(message)
                elif isinstance(message, Result | Failure):
                    if isinstance(message, Failure):
                        logger.debug("worker traceback:\n%s", message.traceback)
                    return message
                # Ready: a spare's greeting that wait_warm did not read; nothing to do.
        finally:
            pipe.close()

    def _stopped_by(self, message: Stopped) -> Failure | None:
        """The worker stopped on a SIGTERM before the daemon asked (systemd signals the whole
        group at once): a stop if the daemon is stopping it too, else a failure."""
        if self.should_stop():
            self.stopped = message.metrics
            return None
        return Failure(
            "the worker process was stopped by a SIGTERM that tailord did not send "
            "(its update is not resumed); the next update tries again"
        )

    def _stop(
        self,
        update_id: int,
        process: BaseProcess,
        pipe: Connection,
        on_progress: Callable[[bodies.Progress], None],
    ) -> None:
        logger.info("stopping update %d at its next mini-batch, with a checkpoint", update_id)
        process.terminate()
        if self.keep_spare and not self.shutting_down():
            self.prewarm()  # starts while the worker checkpoints: the resume finds it ready
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while (left := deadline - time.monotonic()) > 0 and pipe.poll(left):
            try:
                message = receive(pipe)
            except EOFError:
                return
            if isinstance(message, Progress):  # sent before the stop: the record is whole
                on_progress(message.event)
            elif isinstance(message, Stopped):
                self.stopped = message.metrics
                return
        logger.warning("update %d's worker did not stop in time; killing it", update_id)
        process.kill()

    def kill(self) -> None:
        """SIGKILL the running job's worker (a stalled one may not heed SIGTERM)."""
        process = self._ended
        if process is not None and process.is_alive():
            process.kill()

    def reap(self) -> None:
        """Wait for the last job's worker to exit, then start the next spare.

        Called after the publish: the worker's exit (unmapping torch) and the next
        interpreter's start-up would otherwise run on the cores the publish needs.
        """
        process, self._ended = self._ended, None
        if process is not None:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        if self.keep_spare and not self.should_stop():
            self.prewarm()


def _died(process: BaseProcess) -> Failure:
    # The exit code is set only once the process is reaped; its pipe may close a moment
    # before it exits (a kill while it unmaps torch).
    process.join(timeout=DIED_JOIN_SECONDS)
    return Failure(exit_reason(process.exitcode))


def exit_reason(code: int | None) -> str:
    """Why a worker ended without a result, from its exit code (``-N``: killed by signal N)."""
    if code is None:
        return (
            "the worker process closed its pipe without a result and did not exit; it is "
            "being stopped, and the next update starts a fresh one"
        )
    if code >= 0:
        return f"the worker process exited with code {code} without a result; see the log"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "an unknown signal"
    killed = f"the worker process was killed by {name} (signal {-code})"
    if -code == signal.SIGKILL:
        # Nobody else sends SIGKILL to a worker: tailord stops one with SIGTERM.
        return (
            f"{killed}, perhaps by the kernel's out-of-memory killer (look for 'Out of "
            "memory' in journalctl -k); free memory or lower [update] batch_size, and the "
            "next update tries again"
        )
    return f"{killed}; the next update tries again"


def _worker_main(job: WorkerJob | None, conn: Connection) -> None:
    """The spawned process's target: torch is imported there, never in the daemon."""
    from tailord.daemon.updates.worker import main

    main(job, conn)


def _spawn() -> tuple[BaseProcess, Connection]:
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    # daemon=True: an idle spare must not keep tailord from exiting.
    process = ctx.Process(
        target=_worker_main, args=(None, there), name="tailord-update", daemon=True
    )
    process.start()
    there.close()  # the child holds the only other end: EOF means it is gone
    return process, here
