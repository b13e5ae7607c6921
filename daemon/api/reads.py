"""The API's read-only answers that no one service gives whole, assembled as bodies.

An update's or a version's description comes from its service (the updater, the history)
already as its body; the status, the samples page and the metrics' snapshot are put
together here."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tailord.daemon.api import bodies
from tailord.daemon.api.context import ApiContext
from tailord.daemon.conditions.check import Check
from tailord.daemon.metrics import Snapshot
from tailord.daemon.updates.selection import spec_change
from tailord.storage.samples import counts, list_samples
from tailord.storage.states import SampleState


def status(ctx: ApiContext) -> bodies.Status:
    served = ctx.serving.current
    with ctx.db.read() as session:
        by_state = counts(session)
        change = None if served is None else spec_change(session, served.number, ctx.history.spec)
    updater = ctx.updater
    running = updater.running
    stats = ctx.ingest
    queue = by_state.get(SampleState.QUEUED, {})
    return bodies.Status(
        state="updating" if running is not None else "idle",
        version=None if served is None else served.number,
        queued=sum(queue.values()),
        queue=queue,
        samples=by_state,
        policy=_policy(ctx),
        update=None if running is None else bodies.RunningUpdate(running, updater.progress),
        last_update=updater.last_update(),
        load_error=ctx.serving.last_error,
        ingest=bodies.IngestInfo(
            ingested=stats.ingested,
            duplicates=stats.duplicates,
            relabeled=stats.relabeled,
            rejected=stats.rejected,
            waiting=len(ctx.pending),
            error=stats.last_error,
            backpressure=stats.backpressure,
            last_commit_at=stats.last_commit_at,
        ),
        spec_change=change,
        conditions=[
            bodies.Condition(msgspec.convert(c.name, bodies.ConditionName), c.ok, c.detail)
            for c in ctx.conditions()
        ],
    )


def _policy(ctx: ApiContext) -> str:
    """One sentence: why an update runs or waits now."""
    progress = ctx.updater.progress
    if ctx.updater.running is None:
        return ctx.policy_reason()
    if progress is None:
        return "running: starting"
    if progress.kind == "began":
        if progress.epoch or progress.batch:  # resumed from a checkpoint
            return f"running: resumed after epoch {progress.epoch}/{ctx.updater.running_epochs}" + (
                f", batch {progress.batch} of the next" if progress.batch else ""
            )
        return "running: starting"
    return f"running: epoch {progress.epoch}/{ctx.updater.running_epochs}"


def samples(ctx: ApiContext, query: bodies.SamplesQuery) -> bodies.SamplePage:
    with ctx.db.read() as session:
        page = list_samples(
            session, state=query.state, label=query.label, after_id=query.after, limit=query.limit
        )
        by_state = counts(session)
    found = msgspec.convert(page, list[bodies.Sample])
    return bodies.SamplePage(
        counts=by_state,
        samples=found,
        next_after=found[-1].id if len(found) == query.limit else None,
    )


def metrics_snapshot(ctx: ApiContext, conditions: Sequence[Check]) -> Snapshot:
    """What ``/metrics`` reports at scrape time; ``conditions`` are the last decision's."""
    with ctx.db.read() as session:
        by_state = counts(session)
    served = ctx.serving.current
    stats = ctx.ingest
    return Snapshot(
        queued=by_state.get(SampleState.QUEUED, {}),
        learned=sum(by_state.get(SampleState.LEARNED, {}).values()),
        ingested=stats.ingested,
        duplicates=stats.duplicates,
        rejected=stats.rejected,
        waiting=len(ctx.pending),
        version=None if served is None else served.number,
        updating=ctx.updater.running is not None,
        conditions={c.name: c.ok for c in conditions},
    )
