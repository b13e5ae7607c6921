"""Connections left idle: closed after ``[api] idle_timeout``, and the longest-idle one
closed first to make room at the connection cap.

An idle keep-alive connection costs its client only a reconnect (tailorctl's client does
that by itself), so idle connections can never lock out a client with a request.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

# Orders connections by when they went idle (the loop's clock is the same for a whole batch).
_IDLE_ORDER = itertools.count()


class IdleTimer:
    """Calls ``expired`` once a connection has been idle ``seconds`` (on the loop)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, seconds: float, expired: Callable[[], None]
    ) -> None:
        self.loop = loop
        self.seconds = seconds
        self.expired = expired
        self.since: int | None = None  # when it went idle (a count); None if not idle
        self._handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.disarm()
        self.since = next(_IDLE_ORDER)
        self._handle = self.loop.call_later(self.seconds, self._expired)

    def disarm(self) -> None:
        self.since = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expired(self) -> None:
        self._handle = None
        self.expired()


class Idler(Protocol):
    """A connection as eviction sees it."""

    closed: bool

    @property
    def idle(self) -> IdleTimer: ...


C = TypeVar("C", bound=Idler)


def longest_idle(connections: Iterable[C]) -> C | None:
    """The open connection idle the longest, or None if none is idle."""
    idle = [c for c in connections if c.idle.since is not None and not c.closed]
    if not idle:
        return None
    return min(idle, key=lambda c: c.idle.since or 0)
