"""The API's read-only answers, assembled from the database and the services as bodies."""

from __future__ import annotations

import msgspec
from sqlalchemy import select

from tailord.daemon.api import bodies
from tailord.daemon.api.context import ApiContext
from tailord.storage.models import Version
from tailord.storage.samples import counts, list_samples


def update_info(described: object) -> bodies.UpdateInfo | None:
    """The updater's description of an update as its body."""
    # The updater describes updates as dicts for now; the types are checked here, once.
    return None if described is None else msgspec.convert(described, bodies.UpdateInfo)


def status(ctx: ApiContext) -> bodies.Status:
    with ctx.db.read() as session:
        by_state = counts(session)
    served = ctx.serving.current
    updater = ctx.updater
    running = updater.running
    progress = updater.progress
    stats = ctx.ingest
    queue = by_state.get("queued", {})
    return bodies.Status(
        state="updating" if running is not None else "idle",
        version=None if served is None else served.number,
        queued=sum(queue.values()),
        queue=queue,
        samples=by_state,
        policy=ctx.policy_reason(),
        update=None
        if running is None
        else bodies.RunningUpdate(
            running, None if progress is None else msgspec.convert(progress, bodies.Progress)
        ),
        last_update=update_info(updater.last_update()),
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
    )


def versions(ctx: ApiContext) -> bodies.VersionList:
    current = ctx.store.current_number()
    with ctx.db.read() as session:
        rows = session.scalars(select(Version).order_by(Version.number))
        return bodies.VersionList([_version_info(row, current) for row in rows])


def version_detail(ctx: ApiContext, number: int) -> bodies.VersionDetail | None:
    current = ctx.store.current_number()
    with ctx.db.read() as session:
        row = session.get(Version, number)
        if row is None:
            return None
        info = msgspec.structs.asdict(_version_info(row, current))
        return bodies.VersionDetail(**info, manifest=dict(row.manifest))


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


def _version_info(row: Version, current: int | None) -> bodies.VersionInfo:
    manifest = row.manifest
    return bodies.VersionInfo(
        number=row.number,
        parent=row.parent,
        created_at=row.created_at,
        sample_count=row.sample_count,
        current=row.number == current,
        labels=msgspec.convert(manifest.get("labels", []), list[str]),
        metrics=msgspec.convert(manifest.get("metrics", {}), bodies.UpdateMetrics),
        update=msgspec.convert(manifest.get("update"), int | None),
        pinned=row.pinned,
        removed=row.removed_at is not None,
    )
