"""Which samples an update learns, and from which head: decided by the daemon, before the job.

The same decision serves an update that runs in a worker process (trained heads) and one that
runs in the daemon (k-NN rows): the job only carries its outcome, a :class:`Selection`.

- From the current version (the default): the queued samples up to the newest one now, on top
  of the current head (a trained head also replays some learned ones).
- From base: the head of version 0, relearning every learned sample (in id order) plus the
  queue. Asked for with ``POST /v1/update {"from": "base"}``, taken by itself when the model
  spec differs from the current version's (a head learned under another spec cannot go on),
  and used by forget, which leaves the queue out: its version must equal one built from the
  remaining learned samples alone.
"""

from __future__ import annotations

import logging

import msgspec
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tailord.storage.models import Sample, SampleState, Version
from tailord.trainer.errors import ModelError
from tailord.trainer.spec import ModelSpec

logger = logging.getLogger(__name__)

RETRAIN_COMMAND = "tailorctl update --from base"


class Selection(msgspec.Struct, frozen=True, kw_only=True):
    """What one update learns."""

    base_version: int  # the current version: the gate compares the candidate with it
    up_to_id: int  # the newest queued sample it learns; 0: it learns no queued sample
    relearn: bool  # from version 0's head, every learned sample learned again as new


def choose(
    session: Session, *, base_version: int, from_base: bool, learn_queue: bool = True
) -> Selection | None:
    """The selection, or None when it would learn nothing."""
    up_to_id = 0
    if learn_queue:
        newest = session.scalar(
            select(func.max(Sample.id)).where(Sample.state == SampleState.QUEUED)
        )
        up_to_id = newest or 0
    if from_base:
        learned = session.scalar(
            select(Sample.id).where(Sample.state == SampleState.LEARNED).limit(1)
        )
        if learned is None and not up_to_id:
            return None
    elif not up_to_id:
        return None
    return Selection(base_version=base_version, up_to_id=up_to_id, relearn=from_base)


def spec_of(session: Session, number: int) -> ModelSpec | None:
    """The model spec version ``number`` was built with (None: no row, or one that does not
    read as a spec of this release)."""
    row = session.get(Version, number)
    if row is None:
        return None
    try:
        return msgspec.convert(row.manifest.get("spec"), ModelSpec)
    except (msgspec.ValidationError, ModelError):
        return None


def spec_change(session: Session, number: int, spec: ModelSpec) -> str | None:
    """Why version ``number`` cannot simply be updated under ``spec`` (None: it can)."""
    built = spec_of(session, number)
    if built == spec:
        return None
    was = "an unknown spec" if built is None else _short(built)
    return (
        f"[model] changed since version {number} was made ({was} -> {_short(spec)}); "
        f"it keeps serving until `{RETRAIN_COMMAND}` retrains the head on every learned sample"
    )


def _short(spec: ModelSpec) -> str:
    return ", ".join(f"{k}={v}" for k, v in msgspec.structs.asdict(spec).items() if v is not None)
