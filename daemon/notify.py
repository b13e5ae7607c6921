"""systemd's notify protocol (sd_notify(3)): readiness, status, watchdog, reload, stop.

The protocol is one datagram of ``KEY=value`` lines on the Unix socket named by
``$NOTIFY_SOCKET`` (``@`` means Linux's abstract namespace). That is a dozen lines of
standard library, so no package: the maintained ones (sdnotify, systemd-python) either wrap
exactly this or need libsystemd's headers to build.

Without ``$NOTIFY_SOCKET`` (a terminal, a test, another supervisor) every call is a no-op.
The variables are removed from the environment on reading, as ``sd_notify(unset=1)`` does,
so that the update worker (a child process) never speaks for the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, MutableMapping

logger = logging.getLogger(__name__)


def send(address: str, message: str) -> bool:
    """Send ``message`` as one datagram to ``address``; False (logged once) if it failed.

    A failure is not fatal: systemd may have gone (a shutdown) or the socket may be gone
    from a mount namespace; the daemon keeps serving either way.
    """
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode())
    except OSError as exc:
        logger.warning("could not notify systemd on %s: %s", address, exc)
        return False
    return True


class Notifier:
    """The daemon's side of the protocol; each method sends one datagram (if supervised)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        # sd_watchdog_enabled(3) advises pinging at half the timeout: one late ping then
        # does not get a healthy daemon killed.
        self.watchdog_period = None if not watchdog_usec else watchdog_usec / 2e6
        self._last_status: str | None = None
        self._last_ping = float("-inf")  # monotonic
        self._dead: str | None = None  # the part already reported dead

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None) or None
        usec = env.pop("WATCHDOG_USEC", None)
        pid = env.pop("WATCHDOG_PID", None)
        watchdog: int | None = None
        # WATCHDOG_PID, when set, names the process systemd watches: a parent's value
        # leaked into a child must not make the child ping.
        ours = pid is None or (pid.isdigit() and int(pid) == os.getpid())
        if usec is not None and usec.isdigit() and int(usec) > 0 and ours:
            watchdog = int(usec)
        return cls(address, watchdog)

    def notify(self, **fields: object) -> bool:
        if self.address is None:
            return False
        return send(self.address, "\n".join(f"{key}={value}" for key, value in fields.items()))

    def ready(self, status: str) -> None:
        self._last_status = status
        self.notify(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, text: str) -> None:
        """``STATUS=``, only when it changed: the main loop calls this on every wake-up."""
        if text != self._last_status:
            self._last_status = text
            self.notify(STATUS=text)

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd tell this reload from an earlier one (systemd 253's
        # Type=notify-reload requires it; older ones ignore it).
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify(RELOADING=1, MONOTONIC_USEC=usec, STATUS="reloading the configuration")

    def reloaded(self) -> None:
        self.notify(READY=1, STATUS=self._last_status or "reloaded")

    def stopping(self) -> None:
        self.notify(STOPPING=1, STATUS="stopping")

    def ping_if_due(self, parts: Mapping[str, Callable[[], bool]]) -> str | None:
        """``WATCHDOG=1`` when half the timeout passed and every one of ``parts`` is alive.

        Returns the name of a dead part (and then sends nothing: systemd's watchdog then
        kills and restarts the daemon, which is the recovery wanted), else None.
        """
        if self.watchdog_period is None or self.address is None:
            return None
        for name, alive in parts.items():
            if not alive():
                if self._dead != name:
                    self._dead = name
                    logger.error(
                        "the %s thread has died; no more watchdog pings, so systemd restarts "
                        "tailord (WatchdogSec=); the log above says why it died",
                        name,
                    )
                return name
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_period:
            self._last_ping = now
            self.notify(WATCHDOG=1)
        return None
