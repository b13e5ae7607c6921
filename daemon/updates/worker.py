"""The update worker: a separate process that learns the queue and writes a candidate.

Its contract is narrow (messages.py). It receives a :class:`WorkerJob`, reads the samples
itself from SQLite, turns their payloads into backbone features (through the embedding
cache), trains with ``tailord.trainer`` (checkpointing into ``job.checkpoints``), runs the
gate, writes ``weights.safetensors`` and ``samples.txt`` into the job's staging folder, and
sends messages back on a pipe: progress events while it runs, then one :class:`Result` or
:class:`Failure`. It never publishes: the daemon does. Its only writes to the database are
cached embeddings.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

import msgspec
import numpy as np
import numpy.typing as npt
import torch

from tailord.daemon.api import bodies
from tailord.daemon.updates.knn import gate_figures
from tailord.daemon.updates.messages import (
    Failure,
    Message,
    Progress,
    Ready,
    Result,
    Stopped,
    WorkerJob,
    receive_job,
    send,
)
from tailord.daemon.updates.stopping import Meter, StopFlag
from tailord.storage.db import Database
from tailord.storage.embeddings import cached as cached_embeddings
from tailord.storage.embeddings import store as store_embeddings
from tailord.storage.replay import SampleRow, queued_rows, replay_and_canary
from tailord.storage.versions import SAMPLES_FILE, WEIGHTS, VersionStore
from tailord.trainer.errors import UpdateCancelled
from tailord.trainer.gate import evaluate, split_holdout
from tailord.trainer.model import Model
from tailord.trainer.refit import learn_held_out
from tailord.trainer.update import ProgressEvent, run_update, warm_up

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

BATCH_EVENT_SECONDS = 0.25  # mini-batch events are thinned to about this interval
Rows = npt.NDArray[np.float32]


class _Thinned:
    """Sends every began/epoch event, and a mini-batch event at most every interval."""

    def __init__(self, send: Callable[[Message], None], meter: Meter) -> None:
        self.send, self.meter = send, meter
        self.last = 0.0
        self.curve: list[bodies.CurvePoint] = []

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if event.kind == "batch":
            self.meter.batches += 1
            if now - self.last < BATCH_EVENT_SECONDS:
                return
            self.last = now
        elif event.kind == "epoch" and event.loss is not None:
            point = bodies.CurvePoint(event.epoch, event.loss, event.accuracy)
            self.curve = [p for p in self.curve if p.epoch != event.epoch] + [point]
        # Validated here, in the worker: a kind the daemon does not know fails the update.
        progress = msgspec.convert(event, bodies.Progress, from_attributes=True)
        self.send(Progress(progress))


def encode(db: Database, model: Model, samples: Sequence[SampleRow]) -> Rows:
    """Rows for run_update; a frozen backbone's features come from the cache or are stored."""
    backbone = model.backbone
    if not samples:
        return np.zeros((0, model.dim or 0), dtype=np.float32)
    if model.trains_backbone or not backbone.cacheable:
        return model.encode([s.payload for s in samples])
    with db.read() as session:
        found = cached_embeddings(session, backbone.identity, [s.sha256 for s in samples])
    missing = [s for s in samples if s.sha256 not in found]
    if missing:
        started = time.monotonic()
        features = backbone.features([s.payload for s in missing])
        fresh = {
            s.sha256: row.astype("<f4").tobytes() for s, row in zip(missing, features, strict=True)
        }
        with db.write() as session:
            store_embeddings(session, backbone.identity, features.shape[1], fresh)
        found.update(fresh)
        logger.info(
            "computed %d embeddings in %.2fs (%d cached)",
            len(missing),
            time.monotonic() - started,
            len(samples) - len(missing),
        )
    return np.stack([np.frombuffer(found[s.sha256], dtype="<f4") for s in samples]).astype(
        np.float32
    )


def run_job(
    job: WorkerJob,
    send: Callable[[Message], None],
    stop: StopFlag,
    meter: Meter,
) -> Result:
    """Do the update described by ``job``; ``send`` receives progress messages.

    ``stop`` is asked before each mini-batch: when it answers True the trainer checkpoints
    and raises UpdateCancelled. ``meter`` counts the cost (in the Result's metrics)."""
    torch.set_num_threads(max(1, job.threads))
    spec, params, gate = job.spec, job.params, job.gate
    store = VersionStore(job.data_dir)
    current = Model.from_bytes(store.read(job.base_version).weights)
    # The daemon decided (selection.py): from base, relearning all. A changed spec (another
    # head, say) always is; the check here only guards a job made without it. k alone (an
    # update's own, say) only changes how many neighbours vote.
    fresh = job.relearn or msgspec.structs.replace(current.spec, k=spec.k) != spec
    model = Model.base(spec) if fresh else current.with_k(spec.k)
    knn_like = spec.head in ("knn", "auto")

    db = Database(job.database)
    began = time.monotonic()
    try:
        with db.read() as session:
            new = queued_rows(session, job.up_to_id)
            limit = 10**9 if fresh else (0 if knn_like else params.replay)
            canary_limit = gate.canary if gate.enabled and not fresh else 0
            # A regress model's labels are numbers: no per-label shares, one reservoir.
            old, canary = replay_and_canary(
                session, limit, canary_limit, params.seed, per_label=not spec.regress
            )
        if not new and not (fresh and old):
            raise RuntimeError("no queued or learned samples; nothing to learn")
        judged = gate.enabled and current.learned and not fresh
        held = (
            set(
                split_holdout(
                    [s.label for s in new], gate.holdout, params.seed, per_label=not spec.regress
                )
            )
            if judged
            else set()
        )
        train = [s for i, s in enumerate(new) if i not in held]
        holdout = [s for i, s in enumerate(new) if i in held]
        logger.info(
            "read %d queued, %d replay and %d canary samples in %.2fs",
            len(new),
            len(old),
            len(canary),
            time.monotonic() - began,
        )
        started = time.monotonic()
        train_x, old_x = encode(db, model, train), encode(db, model, old)
        holdout_x, canary_x = encode(db, model, holdout), encode(db, model, canary)
        encode_seconds = time.monotonic() - started
    finally:
        db.close()

    train_labels, old_labels = [s.label for s in train], [s.label for s in old]
    if fresh and old:
        # The standard model relearns everything: to it, the earlier samples are new (a k-NN
        # head ignores replay, so they must come in as new rows).
        train_x = np.concatenate([old_x, train_x]) if train else old_x
        train_labels = old_labels + train_labels
        old_x, old_labels = old_x[:0], []
    progress = _Thinned(send, meter)
    started = time.monotonic()
    meter.training_began()
    with stop.training_section():
        candidate = run_update(
            model,
            train_x,
            train_labels,
            old_x,
            old_labels,
            params,
            progress,
            stop,
            checkpoint_dir=job.checkpoints,
        )
    seconds, cost = time.monotonic() - started, meter.metrics()
    verdict = evaluate(
        candidate,
        current,
        (holdout_x, [s.label for s in holdout]),
        (canary_x, [s.label for s in canary]),
        gate,
    )
    # Judged, now learned: a memory head appends its held-out shots, a trained head is
    # refitted with them once it passed (trainer/refit.py).
    candidate, verdict = learn_held_out(
        model,
        candidate,
        current,
        verdict,
        (train_x, train_labels),
        (holdout_x, [s.label for s in holdout]),
        (old_x, old_labels),
        (canary_x, [s.label for s in canary]),
        params,
        gate,
    )
    promote = verdict.promote or not gate.enabled
    if promote:
        (job.staging / WEIGHTS).write_bytes(candidate.to_bytes())
        # From base, the version learned the earlier samples too: it lists them all.
        learned = [*old, *new] if fresh else new
        (job.staging / SAMPLES_FILE).write_text("".join(s.sha256 + "\n" for s in learned))
    logger.info(
        "trained in %.2fs; gate and candidate done %.2fs later",
        seconds,
        time.monotonic() - started - seconds,
    )
    return Result(
        sample_ids=[s.id for s in new],
        new_samples=len(new),
        labels=list(candidate.labels),
        sample_count=candidate.sample_count,
        spec=spec,
        metrics=bodies.UpdateMetrics(
            seconds=seconds,
            encode_seconds=encode_seconds,
            replayed=len(old),
            curve=progress.curve,
            cpu_seconds=cost.cpu_seconds,
            worker_cpu_seconds=meter.metrics().worker_cpu_seconds,
            batches=cost.batches,
        ),
        gate=gate_figures(verdict, gate.enabled),
        promote=promote,
    )


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the daemon dies.

    A daemon killed with SIGKILL cannot stop its worker; an orphan would go on training and
    writing into staging/ while a restarted daemon starts its own update. (The signal
    follows the *thread* that spawned the worker: the daemon spawns them from its main thread.)
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except (OSError, AttributeError):
        logger.warning("could not tie the worker's life to the daemon's", exc_info=True)
        return
    if os.getppid() == 1:  # the daemon died before the request took effect
        os._exit(1)


def main(job: WorkerJob | None, conn: Connection) -> None:
    """Entry point of the spawned process; with no ``job``, wait for one on ``conn``.

    Waiting is what a prewarmed worker does: its interpreter and torch are loaded, and torch
    has built an optimizer once (see warm_up), before it says it is ready.
    """
    _die_with_parent()
    if job is None:
        warm_up()
        try:
            send(conn, Ready())
            job = receive_job(conn)
        except (EOFError, OSError):  # the daemon exited without giving it work
            return
    logging.basicConfig(
        level=job.log_level, format="%(asctime)s tailord-worker %(levelname)s %(message)s"
    )
    try:
        os.nice(job.nice)
    except OSError:
        logger.debug("could not lower the worker's priority", exc_info=True)
    stop, meter = StopFlag(), Meter()
    stop.install()
    try:
        result = run_job(job, lambda message: send(conn, message), stop, meter)
    except UpdateCancelled as exc:
        if not stop.asked:
            send(conn, Failure(f"{exc.__class__.__name__}: {exc}", traceback.format_exc()))
            raise SystemExit(1) from None
        logger.info("%s; checkpoint kept for the resume", exc)
        with contextlib.suppress(OSError):  # the daemon may have stopped listening
            send(conn, Stopped(meter.metrics()))
        logging.shutdown()
        os._exit(0)
    except BaseException as exc:
        send(conn, Failure(f"{exc.__class__.__name__}: {exc}", traceback.format_exc()))
        raise SystemExit(1) from None
    send(conn, result)
    conn.close()
    logging.shutdown()
    # Skip the interpreter's teardown (torch's is slow): the daemon waits for this exit, and
    # everything that matters is written and sent already.
    os._exit(0)
