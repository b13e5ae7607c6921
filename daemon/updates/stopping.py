"""The worker's side of a stop: SIGTERM asks it to stop between two mini-batches (where the
trainer writes its checkpoint), and what the job's training cost in CPU time.

The daemon stops a worker with SIGTERM (an expiry, a cancel, its own shutdown; a cancel's
checkpoint is dropped once the worker has stopped). While the worker trains, SIGTERM only
raises a flag the trainer reads before each mini-batch: it then checkpoints where it is and
raises ``UpdateCancelled``. Outside training (reading, encoding, the gate) there is nothing
to keep, and SIGTERM ends the worker at once, as it did before. CPU time is
``time.process_time()``: all of the worker's threads, and unlike wall time not moved by
other work on the machine.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from tailord.daemon.api import bodies


class StopFlag:
    """The trainer's ``should_stop``; SIGTERM's handler while a job runs."""

    def __init__(self) -> None:
        self.asked = False
        self.training = False

    def __call__(self) -> bool:
        return self.asked

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)

    @contextmanager
    def training_section(self) -> Iterator[None]:
        self.training = True
        try:
            yield
        finally:
            self.training = False
        if self.asked:  # asked after the last batch's look: nothing more to keep
            _die()

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.training:
            self.asked = True
        else:
            _die()


def _die() -> None:
    # As SIGTERM's default would: the exit status says "killed by SIGTERM".
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


class Meter:
    """The job's cost: training wall and CPU seconds, the whole job's CPU, batches trained."""

    def __init__(self) -> None:
        self.job_cpu = time.process_time()
        self.train_cpu: float | None = None
        self.train_wall = 0.0
        self.batches = 0

    def training_began(self) -> None:
        self.train_cpu, self.train_wall = time.process_time(), time.monotonic()

    def metrics(self) -> bodies.UpdateMetrics:
        """The figures so far (a stopped job's are its last)."""
        if self.train_cpu is None:
            return bodies.UpdateMetrics(worker_cpu_seconds=time.process_time() - self.job_cpu)
        return bodies.UpdateMetrics(
            seconds=time.monotonic() - self.train_wall,
            cpu_seconds=time.process_time() - self.train_cpu,
            worker_cpu_seconds=time.process_time() - self.job_cpu,
            batches=self.batches,
        )
