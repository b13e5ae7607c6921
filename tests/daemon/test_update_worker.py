"""The update worker as a real spawned process on a real SQLite file."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import safetensors.torch
import torch

from tailord.daemon.api import bodies
from tailord.daemon.updates.messages import (
    Failure,
    Progress,
    Result,
    Stopped,
    WorkerJob,
    receive,
    send,
)
from tailord.daemon.updates.worker import encode, main
from tailord.daemon.updates.workers import Workers, exit_reason
from tailord.daemon.versions.publish import ManifestFields, ensure_base, publish
from tailord.storage.db import Database, open_database
from tailord.storage.embeddings import cached
from tailord.storage.models import Embedding
from tailord.storage.replay import queued_rows
from tailord.storage.samples import NewSample, add_samples
from tailord.storage.versions import WEIGHTS, VersionStore
from tailord.trainer import checkpoint
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tests.conftest import wait_for

SPEC = ModelSpec(head="mlp", hidden=32)


def vector_samples(n: int, dim: int, seed: int) -> list[NewSample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = "abc"[i % 3]
        v = rng.normal(0, 1, dim).astype("<f4")
        v["abc".index(label)] += 3.0
        payload = v.tobytes()
        sha = hashlib.sha256(payload).hexdigest()
        out.append(NewSample(sha, label, "vector", payload, f"{label}/{i}.npy", len(payload)))
    return out


def setup_data(root: Path, samples: list[NewSample], spec: ModelSpec = SPEC) -> Database:
    db = open_database(root / "tailord.db")
    with db.write() as session:
        add_samples(session, samples)
    ensure_base(VersionStore(root), db, spec)
    return db


def job_for(root: Path, name: str, params: UpdateParams, spec: ModelSpec = SPEC) -> WorkerJob:
    staging = root / "staging" / name
    staging.mkdir(parents=True, exist_ok=True)
    return WorkerJob(
        update_id=1,
        database=root / "tailord.db",
        data_dir=root,
        staging=staging,
        base_version=0,
        up_to_id=10**9,
        spec=spec,
        params=params,
        nice=0,
        checkpoints=root / "checkpoints" / name,
    )


def start(job: WorkerJob) -> tuple[Any, Any]:
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=main, args=(job, send))
    process.start()
    send.close()
    return process, receive


def run(job: WorkerJob) -> tuple[Result, list[bodies.Progress]]:
    process, pipe = start(job)
    events = []
    try:
        while True:
            message = receive(pipe)  # decoded with the union type: a drift fails here
            if isinstance(message, Progress):
                events.append(message.event)
            elif isinstance(message, Result):
                return message, events
            elif isinstance(message, Failure):
                raise AssertionError(message.message + message.traceback)
    finally:
        process.join(30)


def head_tensors(staging: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load((staging / WEIGHTS).read_bytes())


@pytest.mark.slow
def test_same_samples_spec_and_seed_give_the_same_weights(tmp_path: Path) -> None:
    setup_data(tmp_path, vector_samples(60, 8, seed=1)).close()
    params = UpdateParams(epochs=5, batch_size=8, seed=4)
    first, events = run(job_for(tmp_path, "one", params))
    run(job_for(tmp_path, "two", params))
    one = head_tensors(tmp_path / "staging" / "one")
    two = head_tensors(tmp_path / "staging" / "two")
    assert one.keys() == two.keys()
    assert all(torch.equal(one[k], two[k]) for k in one)  # another seed differs: see trainer
    assert first.promote
    curve = first.metrics.curve
    assert curve is not None
    assert [p.epoch for p in curve] == [1, 2, 3, 4, 5]
    assert curve[-1].loss is not None
    assert curve[0].loss is not None
    assert curve[-1].loss < curve[0].loss
    assert first.gate.enabled
    kinds = [e.kind for e in events]
    assert kinds[0] == "began"
    assert kinds.count("epoch") == 5
    assert 1 <= kinds.count("batch") < 5 * 8  # thinned: at most one every 0.25 s


@pytest.mark.slow
def test_a_killed_worker_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    # Enough work that a kill lands mid-run: 1500 samples in batches of 2, 12 epochs.
    setup_data(tmp_path, vector_samples(1500, 16, seed=2)).close()
    params = UpdateParams(epochs=12, batch_size=2, learning_rate=0.001, seed=1)
    whole, _ = run(job_for(tmp_path, "whole", params))

    job = job_for(tmp_path, "cut", params)
    meta = job.checkpoints / checkpoint.META if job.checkpoints else Path()
    process, pipe = start(job)
    wait_for(meta.exists, timeout=60, interval=0.02)
    os.kill(process.pid, signal.SIGTERM)  # what Updater does when the daemon stops
    messages = []
    while pipe.poll(30):
        try:
            messages.append(receive(pipe))
        except EOFError:
            break
    process.join(30)
    pipe.close()
    # It stopped between two mini-batches, checkpointed there, and said what it cost.
    assert process.exitcode == 0
    assert isinstance(messages[-1], Stopped)
    stopped = messages[-1].metrics
    saved = json.loads(meta.read_text())
    done, batch = saved["epoch"], saved["batch"]
    if done >= params.epochs:
        pytest.fail("the worker finished before it was killed; give it more work")

    resumed, events = run(job)
    assert (events[0].kind, events[0].epoch, events[0].batch) == ("began", done, batch)
    assert sum(e.kind == "epoch" for e in events) == params.epochs  # the whole curve
    assert resumed.metrics.curve == whole.metrics.curve
    # No mini-batch trained twice; CPU time is measured on both sides of the stop.
    assert isinstance(stopped.batches, int)
    assert isinstance(resumed.metrics.batches, int)
    assert stopped.batches + resumed.metrics.batches == whole.metrics.batches
    assert isinstance(stopped.cpu_seconds, float)
    assert isinstance(resumed.metrics.cpu_seconds, float)
    assert stopped.cpu_seconds > 0
    assert resumed.metrics.cpu_seconds > 0
    cut = head_tensors(tmp_path / "staging" / "cut")
    full = head_tensors(tmp_path / "staging" / "whole")
    assert all(torch.equal(cut[k], full[k]) for k in full)


def test_image_features_are_computed_once_and_cached(tmp_path: Path) -> None:
    import io

    from PIL import Image

    samples = []
    for i in range(6):
        pixels = np.full((20, 20), 40 * i, dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "L").save(buffer, "PNG")
        data = buffer.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        samples.append(NewSample(sha, "dark" if i < 3 else "light", "image", data, "x", len(data)))
    spec = ModelSpec(backbone="image", head="knn", image_size=16)
    db = setup_data(tmp_path, samples, spec)
    model = Model.base(spec)
    with db.read() as session:
        rows = queued_rows(session, 10**9)
    first = encode(db, model, rows)
    with db.read() as session:
        stored = session.query(Embedding).count()
        found = cached(session, model.backbone.identity, [r.sha256 for r in rows])
    assert stored == 6
    assert np.array_equal(np.stack([np.frombuffer(found[r.sha256], "<f4") for r in rows]), first)
    # Poison the cache: a second encode must read it instead of recomputing.
    with db.write() as session:
        session.query(Embedding).update({Embedding.vector: np.zeros(512, "<f4").tobytes()})
    assert not encode(db, model, rows).any()
    db.close()


@pytest.mark.slow
def test_a_changed_spec_relearns_every_sample(tmp_path: Path) -> None:
    knn = ModelSpec(head="knn")
    db = setup_data(tmp_path, vector_samples(30, 8, seed=1), knn)
    first, _ = run(job_for(tmp_path, "one", UpdateParams(), knn))
    manifest = ManifestFields(
        spec=knn, labels=first.labels, sample_count=30, metrics=bodies.UpdateMetrics()
    )
    publish(
        VersionStore(tmp_path),
        db,
        None,  # no serving side in this test
        staging_name="one",
        number=1,
        parent=0,
        manifest=manifest,
        sample_ids=first.sample_ids,
    )
    with db.write() as session:
        add_samples(session, vector_samples(3, 8, seed=9))
    db.close()
    changed = ModelSpec(head="knn", k=3)  # another spec: start from its standard model
    job = msgspec.structs.replace(job_for(tmp_path, "two", UpdateParams(), changed), base_version=1)
    result, _ = run(job)
    assert result.new_samples == 3
    assert result.sample_count == 33  # the 30 learned under the old spec came along
    assert result.spec == changed
    model = Model.from_bytes((tmp_path / "staging" / "two" / WEIGHTS).read_bytes())
    assert model.spec == changed


def test_a_failing_job_comes_back_as_a_failure(tmp_path: Path) -> None:
    setup_data(tmp_path, vector_samples(6, 8, seed=1)).close()
    job = msgspec.structs.replace(job_for(tmp_path, "bad", UpdateParams()), base_version=7)
    workers = Workers(prewarm=False, should_stop=lambda: False)
    progress: list[bodies.Progress] = []
    outcome = workers.run(job, progress.append)
    workers.reap()
    assert isinstance(outcome, Failure)
    assert outcome.message.startswith("VersionNotFound: ")
    assert "Traceback" in outcome.traceback
    assert progress == []


def test_the_pipe_refuses_a_message_that_does_not_fit_its_struct() -> None:
    here, there = multiprocessing.Pipe()
    send(there, Progress(bodies.Progress("epoch", 1, 4, 0.5, 100.0, 0.75)))
    assert receive(here) == Progress(bodies.Progress("epoch", 1, 4, 0.5, 100.0, 0.75))
    there.send_bytes(msgspec.msgpack.encode({"type": "progress", "event": {"kind": "lunch"}}))
    with pytest.raises(msgspec.ValidationError, match="kind"):
        receive(here)
    there.send_bytes(msgspec.msgpack.encode({"type": "error", "message": "old shape"}))
    with pytest.raises(msgspec.ValidationError, match="type"):
        receive(here)


def spawned_children() -> set[int]:
    pid = os.getpid()
    found = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"multiprocessing.spawn" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(int(child))
        except FileNotFoundError:
            continue
    return found


def _signal_at_first_event(
    tmp_path: Path, name: str, sig: int
) -> tuple[Result | Failure | None, list[int]]:
    """Run a long update and send ``sig`` to its worker at its first progress event, as
    something other than tailord would; the outcome and the pids signalled."""
    setup_data(tmp_path, vector_samples(300, 16, seed=3)).close()
    params = UpdateParams(epochs=50, batch_size=2, seed=1)  # still training when signalled
    workers = Workers(prewarm=False, should_stop=lambda: False)
    signalled: list[int] = []

    def on_first_event(event: bodies.Progress) -> None:
        if not signalled:
            signalled.extend(spawned_children())
            for pid in signalled:
                os.kill(pid, sig)

    outcome = workers.run(job_for(tmp_path, name, params), on_first_event)
    workers.reap()
    return outcome, signalled


def test_a_worker_killed_by_sigkill_is_named_with_the_oom_killer(tmp_path: Path) -> None:
    outcome, killed = _signal_at_first_event(tmp_path, "killed", signal.SIGKILL)

    assert len(killed) == 1
    assert isinstance(outcome, Failure), outcome
    assert outcome.message.startswith("the worker process was killed by SIGKILL (signal 9), ")
    assert "out-of-memory killer" in outcome.message
    assert "code" not in outcome.message


@pytest.mark.slow
def test_a_worker_stopped_by_someone_else_fails_its_update(tmp_path: Path) -> None:
    outcome, stopped = _signal_at_first_event(tmp_path, "stopped", signal.SIGTERM)
    assert len(stopped) == 1
    assert isinstance(outcome, Failure), outcome
    assert outcome.message.startswith("the worker process was stopped by a SIGTERM that ")


def test_exit_reasons_name_the_signal() -> None:
    assert exit_reason(-signal.SIGTERM).startswith("the worker process was killed by SIGTERM (")
    assert "out-of-memory" not in exit_reason(-signal.SIGSEGV)
    assert exit_reason(3).startswith("the worker process exited with code 3")
    assert "did not exit" in exit_reason(None)


@pytest.mark.slow
def test_a_stop_starts_the_next_spare_while_the_worker_checkpoints(tmp_path: Path) -> None:
    """With ``prewarm``, an expiry's resume must not pay a worker's start-up: the spare is
    started when the stop is asked, not after the stopped worker is reaped."""
    setup_data(tmp_path, vector_samples(300, 16, seed=3)).close()
    params = UpdateParams(epochs=50, batch_size=2, seed=1)  # still training when stopped
    asked: list[bool] = []
    workers = Workers(prewarm=True, should_stop=lambda: bool(asked))
    try:
        assert workers.wait_warm(120), "the first spare did not load torch"
        job = job_for(tmp_path, "stopped", params)

        def stop_on_first_batch(event: bodies.Progress) -> None:
            if event.kind == "batch":
                asked.append(True)

        outcome = workers.run(job, stop_on_first_batch)
        assert outcome is None
        assert workers.stopped is not None  # it answered Stopped: its checkpoint is whole
        assert isinstance(workers.stopped.batches, int)
        assert workers.stopped.batches >= 1
        assert job.checkpoints is not None
        assert (job.checkpoints / checkpoint.TENSORS).exists()
        # Before reap: the stopped worker's successor is there already.
        ran = workers.pids()
        assert len(ran) == 2
        asked.clear()
        assert workers.wait_warm(120), "the next spare did not load torch"
    finally:
        asked.append(True)  # reap starts no further spare
        workers.reap()
        for process in multiprocessing.active_children():
            process.kill()
            process.join()
