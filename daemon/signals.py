"""The daemon's signals: SIGTERM and SIGINT ask it to stop, SIGHUP to read its configuration
again. A handler only sets a flag, which the main loop polls (as uvicorn's server does);
anything more (locks, I/O) could deadlock against the code the signal interrupted.
"""

from __future__ import annotations

import os
import signal
from types import FrameType


class Signals:
    """The flags the handlers set; ``install()`` makes them this process's handlers."""

    def __init__(self) -> None:
        self.should_exit = False
        self.reload_wanted = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hangup)

    def take_reload(self) -> bool:
        """Whether a reload was asked for since the last call (the flag is cleared)."""
        wanted, self.reload_wanted = self.reload_wanted, False
        return wanted

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.should_exit:
            # A second SIGTERM/SIGINT: whoever sent it will not wait for the orderly stop.
            # os.write and os._exit take no lock, unlike logging and sys.exit.
            os.write(2, b"tailord: second stop signal, exiting at once\n")
            os._exit(128 + signum)
        self.should_exit = True

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_wanted = True  # read by the main loop, like should_exit
