"""Which expired update the next one resumes, if any.

An expired update leaves its checkpoint (taken where it stopped) in ``checkpoints/``.
The next update resumes it when the last update that ended is that expired one, it started
from the version still current, and the checkpoint is there: it then reads the same queued
samples (up to the same id, whatever arrived since) with the same seed, and the trainer's
fingerprint check (trainer/fit.py) takes the checkpoint, so no mini-batch done is done again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from tailord.storage.db import Database
from tailord.storage.models import Update, UpdateState

# trainer/checkpoint.py's TENSORS, named here so the daemon's side need not import torch.
CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclass(frozen=True)
class Resume:
    update_id: int  # the expired update
    up_to_id: int  # the highest queued sample id it read


def resumable(db: Database, current: int | None, checkpoints: Path) -> Resume | None:
    with db.read() as session:
        last = session.scalar(
            select(Update)
            .where(Update.state.not_in((UpdateState.PENDING, UpdateState.RUNNING)))
            .order_by(Update.id.desc())
            .limit(1)
        )
    if (
        last is None
        or last.state != UpdateState.EXPIRED
        or last.up_to_id is None
        or last.base_version != current
        or not (checkpoints / CHECKPOINT_FILE).exists()
    ):
        return None
    return Resume(last.id, last.up_to_id)
