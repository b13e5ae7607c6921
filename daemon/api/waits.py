"""``?wait=true``: an update's end waited for on the server's event loop, not on a thread.

A waiter is a :class:`~tailord.daemon.http.wire.Deferred`: it hears the update's
``UpdateFinished`` event on the publisher's thread and wakes its connection; only the final
read of the update's row runs on a worker thread, briefly. Hundreds of waiters hold no
threads, and a client that goes away drops its waiter (its connection closes it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tailord.daemon.api import bodies
from tailord.daemon.events import Event, EventBus, UpdateFinished
from tailord.daemon.http.wire import Response
from tailord.daemon.updates.updater import Updater


class UpdateWait:
    """Waits for update ``update_id`` to end; listening starts at construction, so an end
    between the caller's read of the row and :meth:`subscribe` is not missed."""

    def __init__(
        self,
        updater: Updater,
        events: EventBus,
        update_id: int,
        timeout: float,
        respond: Callable[[bodies.UpdateInfo], Response],
    ) -> None:
        self.timeout = timeout
        self._updater = updater
        self._events = events
        self._id = update_id
        self._respond = respond
        self._lock = threading.Lock()
        self._wake: Callable[[], None] | None = None
        self._ended = False
        events.listen(self._on_event)

    def _on_event(self, event: Event) -> None:
        data = event.data
        if isinstance(data, UpdateFinished) and data.update == self._id:
            with self._lock:
                self._ended = True
                wake = self._wake
            if wake is not None:
                wake()

    def subscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._wake = wake
            ended = self._ended
        if ended:
            wake()

    def answer(self, final: bool) -> Response | None:
        info = self._updater.describe(self._id)
        if info is None:  # cannot happen: rows are never deleted
            return None if not final else self._respond_missing()
        if info.active and not final:
            return None
        return self._respond(info)

    def _respond_missing(self) -> Response:
        body = bodies.ErrorBody(bodies.ErrorDetail("not_found", f"update {self._id} vanished"))
        return Response(404, bodies.encode(body))

    def close(self) -> None:
        self._events.unlisten(self._on_event)
