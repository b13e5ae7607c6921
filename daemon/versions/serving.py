"""The model being served: loaded, verified, warmed up, and swapped by one reference assignment.

A new version is prepared (files read and checked against the manifest's sha256, weights
parsed, one dummy prediction run) while the old one keeps serving; only then is it swapped in
by one assignment. A request takes ``current`` once and finishes on that :class:`Served`, so
requests in flight never see a half-loaded model. A failed load leaves the old version
serving, and is logged, kept in ``last_error`` (``/v1/status``) and published as a
``version.load_failed`` event.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from tailord.daemon.api.bodies import LoadError
from tailord.daemon.events import EventBus, VersionLoadFailed
from tailord.storage.errors import StorageError
from tailord.storage.versions import VersionStore
from tailord.trainer.errors import ModelError
from tailord.trainer.loading import ServedModel, load_model

logger = logging.getLogger(__name__)


class LoadFailed(StorageError):
    """A version could not be loaded, and the previous one keeps serving; the log says why
    (roll back to another version with `tailorctl rollback N`)."""


@dataclass(frozen=True)
class Served:
    """One loaded version; immutable, so a request holding it finishes on it."""

    number: int
    manifest: dict[str, object]  # as read from its manifest.json (docs/versions.md)
    model: ServedModel  # numpy for a vector model, torch for the others


class Serving:
    """Holds the current :class:`Served`; readers take ``.current`` once per request."""

    def __init__(self, events: EventBus | None = None) -> None:
        self._current: Served | None = None
        self._events = events
        self.last_error: LoadError | None = None  # ``load_error`` in ``/v1/status``

    @property
    def current(self) -> Served | None:
        return self._current

    def prepare(self, store: VersionStore, number: int) -> Served:
        """Load, verify and warm up ``number`` without serving it; raises :class:`LoadFailed`."""
        try:
            stored = store.read(number)  # raises CorruptVersion on a sha256 mismatch
            model = load_model(stored.weights)
            if model.learned and model.dim and not model.trains_backbone:
                # Warm-up: the first predict pays for lazy allocations; do it off the clock.
                # Through the head only, on features: that works whatever the input kind.
                warm_up = np.ones((1, model.dim), dtype=np.float32)
                if model.spec.regress:
                    model.estimate_encoded(warm_up)
                else:
                    model.predict_encoded(warm_up)
        except (StorageError, ModelError) as exc:
            message = f"version {number} could not be loaded: {exc}"
            self.last_error = LoadError(number, message, time.time())
            logger.error("%s; still serving version %s", message, self._number())
            if self._events is not None:
                self._events.publish(VersionLoadFailed(number, self._number(), str(exc)))
            raise LoadFailed(message) from exc
        return Served(number, stored.manifest, model)

    def swap(self, served: Served) -> None:
        self._current = served  # the swap: one reference assignment
        self.last_error = None
        logger.info("serving version %d", served.number)

    def load(self, store: VersionStore, number: int) -> Served:
        """Prepare ``number`` while the old version keeps serving, then swap it in."""
        served = self.prepare(store, number)
        self.swap(served)
        return served

    def _number(self) -> int | None:
        current = self._current
        return None if current is None else current.number
