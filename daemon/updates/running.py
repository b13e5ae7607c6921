"""The update running now, if any: what status, the guard and a cancel read of it.

The main loop's thread begins and ends it; the API's and the scheduler's threads read it (each
field one reference, read whole) and may ask it to stop. Its end is marked before the end is
announced (endings.py), so whoever hears ``update.finished`` no longer finds it running.
"""

from __future__ import annotations

from dataclasses import dataclass

from tailord.daemon.api import bodies
from tailord.daemon.updates.progress import ProgressLog
from tailord.daemon.updates.rows import Ending


@dataclass(frozen=True)
class StopRequest:
    """Why a running update is asked to stop (a cancel, an expiry), and what it leaves."""

    ending: Ending  # how the update's row records the stop
    keep_checkpoint: bool = True  # False: the next update starts over rather than resumes


class Running:
    """At most one update at a time: its id, its epochs, its progress, a stop asked of it."""

    def __init__(self, epochs: int) -> None:
        self.update_id: int | None = None
        self.epochs = epochs  # the running update's own (its params)
        self.log: ProgressLog | None = None  # its progress events, once its job is handed over
        self.stop_as: StopRequest | None = None  # why it is being stopped

    def begin(self, update_id: int, epochs: int) -> None:
        self.update_id, self.epochs = update_id, epochs

    def ended(self, update_id: int) -> None:
        """``update_id``'s end is recorded: it no longer runs (a no-op for another one's)."""
        if self.update_id == update_id:
            self.update_id = None
            self.log = None

    def clear(self) -> None:
        """After the update, however it went (its end recorded or not)."""
        self.update_id = None
        self.stop_as = None
        self.log = None

    def stop(self, update_id: int, stop: StopRequest) -> bool:
        """Ask ``update_id`` to stop as ``stop`` says; False when it is not the one running."""
        if self.update_id != update_id:
            return False
        self.stop_as = stop
        return True

    @property
    def progress(self) -> bodies.Progress | None:
        """Its latest progress event."""
        log = self.log
        return log.latest if log is not None else None
