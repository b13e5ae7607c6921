"""In-process event bus: the daemon's parts publish, API clients subscribe (``/v1/events``).

Event types: ``sample.queued``, ``sample.rejected``, ``update.began``, ``update.progress``,
``update.finished``, ``version.changed``. A slow subscriber loses its oldest events rather
than slowing the publisher: its queue is bounded.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

SUBSCRIBER_QUEUE = 1000


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)


class Subscription:
    """One subscriber's bounded queue; iterate with :meth:`get`."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._queue: queue.Queue[Event] = queue.Queue(SUBSCRIBER_QUEUE)
        self.dropped = 0

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
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._ids = itertools.count(1)

    def publish(self, type_: str, **data: Any) -> Event:
        with self._lock:
            event = Event(next(self._ids), type_, data)
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.put(event)
        return event

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)
