"""In-process event bus: the daemon's parts publish, API clients subscribe (``/v1/events``).

Event types: ``sample.queued``, ``sample.rejected``, ``update.began``, ``update.progress``,
``update.judged``, ``update.finished``, ``version.changed``. A slow subscriber loses its
oldest events rather than slowing the publisher: its queue is bounded.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 1000


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "time": self.time, "data": self.data}

    def to_sse(self) -> bytes:
        """The event as one server-sent-events message (``id``, ``event``, ``data`` lines)."""
        data = json.dumps(self.to_dict(), separators=(",", ":"), default=str)
        return f"id: {self.id}\nevent: {self.type}\ndata: {data}\n\n".encode()


class Subscription:
    """One subscriber's bounded queue; iterate with :meth:`get`."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._queue: queue.Queue[Event] = queue.Queue(SUBSCRIBER_QUEUE)
        self.dropped = 0
        self.closed = False

    def put(self, event: Event) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` or once the bus is closed."""
        if self.closed:
            return None
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is _CLOSED:
            self.closed = True
            return None
        return event

    def close(self) -> None:
        self._bus.unsubscribe(self)


_CLOSED = Event(0, "closed", {})


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._ids = itertools.count(1)

    def publish(self, type_: str, **data: Any) -> Event:
        with self._lock:
            event = Event(next(self._ids), type_, data)
            subscribers = list(self._subscribers)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("event listener failed on %s; continuing", event.type)
        for subscriber in subscribers:
            subscriber.put(event)
        return event

    def listen(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback`` on the publisher's thread for every event; keep it quick."""
        with self._lock:
            self._listeners.append(callback)

    def close(self) -> None:
        """End every subscription (at shutdown): their ``get`` returns None from now on."""
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for subscriber in subscribers:
            subscriber.put(_CLOSED)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)
