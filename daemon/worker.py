"""The update worker: a separate process that learns the queue and writes a candidate.

Its contract is narrow. It receives a :class:`WorkerJob`, reads the samples itself from
SQLite (read-only), trains with ``tailord.trainer``, writes ``weights.safetensors`` and
``samples.txt`` into the job's staging folder, and sends messages back on a pipe: progress
events while it runs, then one ``result`` or ``error``. It never publishes: the daemon does.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from tailord.storage.db import Database
from tailord.storage.models import Sample
from tailord.storage.samples import queued, replay
from tailord.storage.versions import WEIGHTS, VersionStore
from tailord.trainer.inputs import vector_from_bytes
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import ProgressEvent, run_update

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.txt"


@dataclass(frozen=True)
class WorkerJob:
    update_id: int
    database: Path
    data_dir: Path
    staging: Path
    base_version: int
    up_to_id: int
    spec: dict[str, Any]
    params: dict[str, Any]
    threads: int = 1
    nice: int = 10
    log_level: int = logging.INFO
    extra: dict[str, Any] = field(default_factory=dict)


def _stack(samples: list[Sample], dim: int | None) -> tuple[np.ndarray, list[str]]:
    if not samples:
        return np.zeros((0, dim or 0), dtype=np.float32), []
    return (
        np.stack([vector_from_bytes(s.payload) for s in samples]),
        [s.label for s in samples],
    )


def run_job(job: WorkerJob, send: Any) -> dict[str, Any]:
    """Do the update described by ``job``; ``send`` receives progress messages."""
    import torch  # imported here so the parent's import of this module stays light

    torch.set_num_threads(max(1, job.threads))
    spec = ModelSpec.from_dict(job.spec)
    params = UpdateParams.from_dict(job.params)
    store = VersionStore(job.data_dir)
    base = Model.from_bytes(store.read(job.base_version).weights)
    # A changed spec (another head, say) starts from the standard model and relearns all.
    fresh = base.spec != spec
    model = Model.base(spec) if fresh else base

    db = Database(job.database)
    try:
        with db.read() as session:
            new = queued(session, up_to_id=job.up_to_id)
            limit = 10**9 if fresh else (0 if spec.head == "knn" else params.replay)
            old = replay(session, limit, seed=params.seed) if limit else []
    finally:
        db.close()
    if not new:
        raise RuntimeError("no queued samples; nothing to learn")
    dim = spec.dim or len(new[0].payload) // 4
    new_x, new_labels = _stack(new, dim)
    old_x, old_labels = _stack(old, dim)

    def progress(event: ProgressEvent) -> None:
        send({"type": "progress", "event": event.__dict__})

    started = time.monotonic()
    candidate = run_update(model, new_x, new_labels, old_x, old_labels, params, progress)
    seconds = time.monotonic() - started
    (job.staging / WEIGHTS).write_bytes(candidate.to_bytes())
    (job.staging / SAMPLES_FILE).write_text("".join(s.sha256 + "\n" for s in new))
    return {
        "sample_ids": [s.id for s in new],
        "new_samples": len(new),
        "replayed": len(old),
        "labels": list(candidate.labels),
        "sample_count": candidate.sample_count,
        "spec": spec.to_dict(),
        "seconds": seconds,
    }


def main(job: WorkerJob, conn: Connection) -> None:
    """Entry point of the spawned process."""
    logging.basicConfig(
        level=job.log_level, format="%(asctime)s tailord-worker %(levelname)s %(message)s"
    )
    try:
        os.nice(job.nice)
    except OSError:
        logger.debug("could not lower the worker's priority", exc_info=True)
    try:
        result = run_job(job, conn.send)
    except BaseException as exc:
        conn.send(
            {
                "type": "error",
                "message": f"{exc.__class__.__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        )
        raise SystemExit(1) from None
    conn.send({"type": "result", "result": result})
    conn.close()
