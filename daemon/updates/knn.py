"""A k-NN update in the daemon: rows appended on numpy, no worker process, no torch.

A vector k-NN head learns by appending its samples' rows, which takes milliseconds, while a
worker process costs a second or more to start and ~300 MB for torch. So the updater runs
such an update here (on its own thread, never the API's), from the same
:class:`~tailord.daemon.updates.messages.WorkerJob` a worker gets and with the same result:
the queue read up to ``job.up_to_id``, the gate on held-out new samples and the canary set,
and the candidate's ``weights.safetensors`` and ``samples.txt`` written into the job's
staging folder, which the updater publishes exactly as it publishes a worker's (crash-safe:
docs/versions.md). Trained heads, and backbones that need torch, keep the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import msgspec

from tailord.daemon.api import bodies
from tailord.daemon.updates.messages import Failure, Result, WorkerJob
from tailord.storage.db import Database
from tailord.storage.replay import SampleRow, queued_rows, replay_and_canary
from tailord.storage.versions import SAMPLES_FILE, WEIGHTS, VersionStore
from tailord.trainer.errors import UpdateCancelled
from tailord.trainer.gate import GateResult, evaluate, split_holdout
from tailord.trainer.knn_memory import appended
from tailord.trainer.light import LightModel, serves_light
from tailord.trainer.spec import ModelSpec
from tailord.trainer.weights import read_fields, read_metadata

logger = logging.getLogger(__name__)


def learns_in_daemon(spec: ModelSpec) -> bool:
    """Whether an update of ``spec`` runs here rather than in a worker: a vector k-NN head."""
    return serves_light(spec) and spec.head == "knn"


def run_here(
    job: WorkerJob,
    db: Database,
    on_progress: Callable[[bodies.Progress], None],
    should_stop: Callable[[], bool],
) -> Result | Failure | None:
    """:func:`run_knn`, answered as a worker answers: None when stopped, Failure on an error."""
    try:
        return run_knn(job, db, on_progress, should_stop)
    except UpdateCancelled:
        return None
    except Exception as exc:  # the update fails, the daemon goes on (as with a worker)
        logger.exception("the k-NN update %d failed", job.update_id)
        return Failure(f"{exc.__class__.__name__}: {exc}")


def run_knn(
    job: WorkerJob,
    db: Database,
    on_progress: Callable[[bodies.Progress], None],
    should_stop: Callable[[], bool],
) -> Result:
    """Do the k-NN update ``job`` describes; raises UpdateCancelled when asked to stop."""
    spec, params, gate = job.spec, job.params, job.gate
    data = VersionStore(job.data_dir).read(job.base_version).weights
    was = read_fields(read_metadata(data))[0]
    # The daemon decided (selection.py): from base, relearning all. A changed spec (another
    # head, a backbone before) always is; the check here only guards a job made without it.
    # An update's own k (overrides.py) is no change: the memory votes with it.
    fresh = job.relearn or msgspec.structs.replace(was, k=spec.k) != spec
    current = LightModel.from_bytes(data) if serves_light(was) else LightModel.base(spec)
    model = LightModel.base(spec) if fresh else current.with_k(spec.k)
    began = time.monotonic()
    with db.read() as session:
        new = queued_rows(session, job.up_to_id)
        canary_limit = gate.canary if gate.enabled and not fresh else 0
        old, canary = replay_and_canary(
            session, 10**9 if fresh else 0, canary_limit, params.seed, per_label=not spec.regress
        )
    if not new and not (fresh and old):
        raise RuntimeError("no queued or learned samples; nothing to learn")
    judged = gate.enabled and current.learned and not fresh
    labels = [s.label for s in new]
    held = set(split_holdout(labels, gate.holdout, params.seed, per_label=not spec.regress))
    held = held if judged else set()
    train = [s for i, s in enumerate(old + new) if i - len(old) not in held]
    holdout = [s for i, s in enumerate(new) if i in held]
    on_progress(bodies.Progress("began", 0, 0, None, None))
    _check(should_stop)
    started = time.monotonic()
    rows = model.encode(_payloads(train))
    encode_seconds = time.monotonic() - started
    candidate = appended(model, rows, _labels(train), params.seed)
    seconds = time.monotonic() - started - encode_seconds
    on_progress(bodies.Progress("epoch", 1, 1, None, len(train) / max(seconds, 1e-9)))
    verdict = evaluate(
        candidate,
        current,
        (model.encode(_payloads(holdout)), _labels(holdout)),
        (model.encode(_payloads(canary)), _labels(canary)),
        gate,
    )
    promote = verdict.promote or not gate.enabled
    if promote and holdout:  # judged, now learned: a memory keeps every shot
        candidate = appended(candidate, model.encode(_payloads(holdout)), _labels(holdout))
    _check(should_stop)
    if promote:
        (job.staging / WEIGHTS).write_bytes(candidate.to_bytes())
        # From base, the version learned the earlier samples too: it lists them all.
        learned = [*old, *new] if fresh else new
        (job.staging / SAMPLES_FILE).write_text("".join(s.sha256 + "\n" for s in learned))
    logger.info(
        "k-NN update of %d samples in the daemon: %.3fs (appending %.3fs)",
        len(new),
        time.monotonic() - began,
        seconds,
    )
    return Result(
        sample_ids=[s.id for s in new],
        new_samples=len(new),
        labels=list(candidate.labels),
        sample_count=candidate.sample_count,
        spec=spec,
        # No loss curve (nothing is trained), but the key, as a worker's k-NN update has it.
        metrics=bodies.UpdateMetrics(
            seconds=seconds, encode_seconds=encode_seconds, replayed=0, curve=[]
        ),
        gate=gate_figures(verdict, gate.enabled),
        promote=promote,
    )


def _check(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise UpdateCancelled("the update was cancelled before it published; nothing changed")


def _payloads(samples: Sequence[SampleRow]) -> list[bytes]:
    return [s.payload for s in samples]


def _labels(samples: Sequence[SampleRow]) -> list[str]:
    return [s.label for s in samples]


def gate_figures(verdict: GateResult, enabled: bool) -> bodies.Gate:
    """The gate's verdict as the API shows it (an update's ``gate``), for both paths."""
    return bodies.Gate(
        promote=verdict.promote,
        reason=verdict.reason,
        holdout_samples=verdict.holdout_samples,
        holdout_candidate=verdict.holdout_candidate,
        holdout_current=verdict.holdout_current,
        canary_samples=verdict.canary_samples,
        canary_candidate=verdict.canary_candidate,
        canary_current=verdict.canary_current,
        metric="mse" if verdict.metric == "mse" else "accuracy",
        enabled=enabled,
    )
