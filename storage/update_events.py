"""Progress events stored with their update: the loss curve survives the daemon."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from tailord.storage.models import UpdateEvent

FIELDS = ("kind", "epoch", "batch", "loss", "accuracy", "samples_per_second")


def add_event(session: Session, update_id: int, event: Mapping[str, Any]) -> None:
    session.add(UpdateEvent(update_id=update_id, **{k: event.get(k) for k in FIELDS}))
