"""In-process event bus: the daemon's parts publish, API clients subscribe (``/v1/events``).

Each event type is one struct below (its ``type`` is a class constant): ``sample.queued``,
``sample.rejected``, ``update.began``, ``update.progress``, ``update.judged``,
``update.finished``, ``update.expired``, ``update.resumed``, ``version.changed``,
``version.load_failed``. A slow subscriber loses its oldest events rather than slowing the
publisher: its queue is bounded.

This module imports neither torch nor SQLAlchemy: ``tailorctl`` decodes the stream with
:func:`decode_event`.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import ClassVar, Literal

import msgspec

from tailord.daemon.api import bodies
from tailord.storage.states import UpdateState

logger = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 1000


class EventData(msgspec.Struct, frozen=True):
    """The payload of one event type; its wire name is ``type``."""

    type: ClassVar[str]


class SampleQueued(EventData, frozen=True):
    type: ClassVar[str] = "sample.queued"
    count: int  # samples committed in one batch


class SampleRejected(EventData, frozen=True):
    type: ClassVar[str] = "sample.rejected"
    name: str  # the file's name in INBOX/.rejected/
    source: str  # its path inside the inbox
    reason: str


class UpdateBegan(EventData, frozen=True):
    type: ClassVar[str] = "update.began"
    update: int
    base_version: int
    reason: str  # the policy's reason, or "requested"
    epochs: int


class UpdateProgressed(EventData, frozen=True):
    """The fields of :class:`bodies.Progress`, flat beside the update's id."""

    type: ClassVar[str] = "update.progress"
    update: int
    kind: bodies.ProgressKind
    epoch: int
    batch: int
    loss: float | None
    samples_per_second: float | None
    accuracy: float | None = None

    @classmethod
    def of(cls, update: int, p: bodies.Progress) -> UpdateProgressed:
        return cls(update, p.kind, p.epoch, p.batch, p.loss, p.samples_per_second, p.accuracy)


class UpdateJudged(EventData, frozen=True):
    type: ClassVar[str] = "update.judged"
    update: int
    promote: bool
    gate: bodies.Gate


class UpdateFinished(EventData, frozen=True):
    """After the update's row is committed: a listener reads the finished row."""

    type: ClassVar[str] = "update.finished"
    update: int
    state: UpdateState
    version: int | None  # the version it published
    error: str | None


class UpdateExpired(EventData, frozen=True):
    """An automatic update stopped because a policy condition ceased to hold."""

    type: ClassVar[str] = "update.expired"
    update: int
    reason: str  # which condition, its figures, and what lets it resume


class UpdateResumed(EventData, frozen=True):
    """An update began from an expired update's checkpoint (same samples, same seed)."""

    type: ClassVar[str] = "update.resumed"
    update: int
    resumed_from: int  # the expired update


class VersionChanged(EventData, frozen=True, omit_defaults=True):
    """``current`` was flipped. A publish names the ``parent``; a rollback the ``previous``
    current and its ``reason``; an import both ``parent`` and ``reason``."""

    type: ClassVar[str] = "version.changed"
    version: int
    parent: int | None = None
    previous: int | None = None
    reason: Literal["rollback", "import"] | None = None


class VersionLoadFailed(EventData, frozen=True):
    type: ClassVar[str] = "version.load_failed"
    version: int
    serving: int | None  # the version that keeps serving
    error: str


class SamplesForgotten(EventData, frozen=True):
    """Samples were forgotten: their rows, the versions that learned them, their bytes."""

    type: ClassVar[str] = "samples.forgotten"
    samples: int
    versions_removed: list[int]
    version: int | None  # the version now current, built without them
    seconds: float


EVENT_TYPES: dict[str, type[EventData]] = {
    cls.type: cls
    for cls in (
        SampleQueued,
        SampleRejected,
        UpdateBegan,
        UpdateProgressed,
        UpdateJudged,
        UpdateFinished,
        UpdateExpired,
        UpdateResumed,
        VersionChanged,
        VersionLoadFailed,
        SamplesForgotten,
    )
}


class Event(msgspec.Struct, frozen=True):
    """One published event as the bus carries it: its number on this bus, its typed payload
    and when it happened. Clients get its :meth:`envelope` (``bodies.Event``)."""

    id: int
    data: EventData
    time: float = msgspec.field(default_factory=time.time)

    @property
    def type(self) -> str:
        return self.data.type

    def envelope(self) -> bodies.Event:
        """The event as ``/v1/events`` sends it: the wire's envelope, defined in bodies."""
        return bodies.Event(self.id, self.type, self.time, msgspec.to_builtins(self.data))

    def to_sse(self) -> bytes:
        """The event as one server-sent-events message (``id``, ``event``, ``data`` lines)."""
        # json.dumps, not msgspec: the stream stays byte for byte what it was (msgspec writes
        # 1e-05 as 0.00001 and non-ASCII raw); events are few, so speed is no concern here.
        data = json.dumps(msgspec.to_builtins(self.envelope()), separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.type}\ndata: {data}\n\n".encode()


def decode_event(raw: bytes | str) -> Event | None:
    """An event from the JSON of one ``data:`` line of ``/v1/events``; None for a type this
    program does not know (a newer daemon's): skip it. Raises ``msgspec.ValidationError``
    when a known type's payload does not fit its struct."""
    envelope = msgspec.json.decode(raw, type=bodies.Event)
    kind = EVENT_TYPES.get(envelope.type)
    if kind is None:
        return None
    return Event(envelope.id, msgspec.convert(envelope.data, kind), envelope.time)


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


class _Closed(EventData, frozen=True):
    type: ClassVar[str] = "closed"  # never published: ends subscriptions at shutdown


_CLOSED = Event(0, _Closed(), 0.0)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._ids = itertools.count(1)

    def publish(self, data: EventData) -> Event:
        with self._lock:
            event = Event(next(self._ids), data)
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

    def unlisten(self, callback: Callable[[Event], None]) -> None:
        """Stop calling ``callback`` (a ``?wait=true`` whose client has gone, say)."""
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

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


__all__ = [
    "EVENT_TYPES",
    "Event",
    "EventBus",
    "EventData",
    "SampleQueued",
    "SampleRejected",
    "SamplesForgotten",
    "Subscription",
    "UpdateBegan",
    "UpdateFinished",
    "UpdateJudged",
    "UpdateProgressed",
    "VersionChanged",
    "VersionLoadFailed",
    "decode_event",
]
