"""Progress events stored with their update: the loss curve survives the daemon."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tailord.storage.models import UpdateEvent

FIELDS = ("kind", "epoch", "batch", "loss", "accuracy", "samples_per_second")


def add_event(session: Session, update_id: int, event: Mapping[str, Any]) -> None:
    session.add(UpdateEvent(update_id=update_id, **{k: event.get(k) for k in FIELDS}))


def events_of(session: Session, update_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(UpdateEvent).where(UpdateEvent.update_id == update_id).order_by(UpdateEvent.id)
    )
    return [{"time": r.time, **{k: getattr(r, k) for k in FIELDS}} for r in rows]
