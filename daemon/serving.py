"""The model being served: loaded, verified, and swapped by one reference assignment."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tailord.storage.versions import VersionStore
from tailord.trainer.model import Model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One loaded version; immutable, so a request holding it finishes on it."""

    number: int
    manifest: dict[str, Any]
    model: Model


class Serving:
    """Holds the current :class:`Served`; readers take ``.current`` once per request."""

    def __init__(self) -> None:
        self._current: Served | None = None

    @property
    def current(self) -> Served | None:
        return self._current

    def load(self, store: VersionStore, number: int) -> Served:
        """Load and verify ``number`` while the old version keeps serving, then swap."""
        stored = store.read(number)  # raises CorruptVersion on a sha256 mismatch
        served = Served(number, stored.manifest, Model.from_bytes(stored.weights))
        self._current = served  # the swap: one reference assignment
        logger.info("serving version %d", number)
        return served
