"""An update's row: recorded when the update ends, described (as the API's
:class:`~tailord.daemon.api.bodies.UpdateInfo`) for the API. The typed structs go into the
row's JSON columns and come back out of them here."""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec
from sqlalchemy.orm import Session

from tailord.daemon.api import bodies
from tailord.daemon.updates.messages import Result
from tailord.storage.models import Update, UpdateState

# The row's enum as the wire's Literal. Built by checking every member at import, so a state
# added to one and not the other stops the daemon at once (tests/storage/test_states.py
# pins them equal too).
WIRE_STATE: dict[UpdateState, bodies.UpdateState] = {
    state: msgspec.convert(state.value, bodies.UpdateState) for state in UpdateState
}


@dataclass(frozen=True)
class Ending:
    """How an update ended, as its row and its ``update.finished`` event record it."""

    state: UpdateState
    version: int | None = None
    error: str | None = None
    result: Result | None = None  # the worker's, when it got that far
    metrics: bodies.UpdateMetrics | None = None  # a stopped worker's cost so far


def record(session: Session, update_id: int, ending: Ending) -> None:
    row = session.get_one(Update, update_id)
    row.state = ending.state
    row.finished_at = time.time()
    row.version = ending.version
    row.error = ending.error
    if ending.result is not None:
        row.sample_count = ending.result.new_samples
        row.metrics = msgspec.to_builtins(ending.result.metrics)
        row.gate = msgspec.to_builtins(ending.result.gate)
    elif ending.metrics is not None:
        row.metrics = msgspec.to_builtins(ending.metrics)


def describe(row: Update, progress: bodies.Progress | None) -> bodies.UpdateInfo:
    """The row as the API shows it; ``progress`` is the latest event of a running update."""
    return bodies.UpdateInfo(
        id=row.id,
        state=WIRE_STATE[row.state],
        reason=row.reason,
        started_at=row.started_at,
        finished_at=row.finished_at,
        base_version=row.base_version,
        version=row.version,
        samples=row.sample_count,
        error=row.error,
        metrics=msgspec.convert(row.metrics or {}, bodies.UpdateMetrics),
        gate=None if row.gate is None else msgspec.convert(row.gate, bodies.Gate),
        progress=progress,
        params=(
            msgspec.UNSET
            if row.params is None
            else msgspec.convert(row.params, bodies.UpdateRequest)
        ),
        from_="base" if row.from_base else "current",
        resumed_from=row.resumed_from,
    )
