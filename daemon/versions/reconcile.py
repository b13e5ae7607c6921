"""Start-up repair: staging cleared, interrupted updates recorded, versions matched to rows."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select, update

from tailord.storage.db import Database
from tailord.storage.errors import StorageError
from tailord.storage.models import (
    Sample,
    SampleState,
    Update,
    UpdateState,
    Version,
    VersionEvent,
)
from tailord.storage.samples import mark_learned_by_sha
from tailord.storage.versions import SAMPLES_FILE, VersionStore

logger = logging.getLogger(__name__)


def reconcile(store: VersionStore, db: Database) -> int | None:
    """Repair what a crash may have left; returns the version that should be current, or
    None if there is none at all yet (a fresh data directory: call :func:`ensure_base`).

    The steps run in this order; each is idempotent, so a crash inside reconcile is
    repaired by the next start.
    """
    with store.lock:
        _clear_staging(store)
        _interrupt_running_updates(db)
        current = _current_or_none(store)
        _adopt_or_delete_unrecorded(store, db, current)
        _mark_missing_folders_removed(store, db)
        return _check_current(store, db, current)


def _clear_staging(store: VersionStore) -> None:
    leftovers = store.clear_staging()
    if leftovers:
        logger.warning("removed %d unfinished candidate(s) from staging/", leftovers)


def _interrupt_running_updates(db: Database) -> None:
    with db.write() as session:
        interrupted = session.execute(
            update(Update)
            .where(Update.state == UpdateState.RUNNING)
            .values(
                state=UpdateState.INTERRUPTED,
                finished_at=time.time(),
                error="the daemon stopped before the update finished; it will run again",
            )
        ).rowcount  # type: ignore[attr-defined]
    if interrupted:
        logger.warning("marked %d unfinished update(s) as interrupted", interrupted)


def _current_or_none(store: VersionStore) -> int | None:
    try:
        return store.current_number()
    except StorageError as exc:
        logger.error("%s", exc)
        return None


def _adopt_or_delete_unrecorded(store: VersionStore, db: Database, current: int | None) -> None:
    with db.write() as session:
        rows = {v.number: v for v in session.scalars(select(Version))}
        for number in store.numbers():
            row = rows.get(number)
            if row is not None and row.removed_at is None:
                continue
            if row is None and number == current and store.is_valid(number):
                stored = store.read(number)
                session.add(
                    Version(
                        number=number,
                        parent=stored.manifest.get("parent"),
                        sample_count=int(stored.manifest.get("sample_count", 0)),
                        manifest=stored.manifest,
                    )
                )
                session.add(
                    VersionEvent(
                        kind="published",
                        version=number,
                        previous=stored.manifest.get("parent"),
                        detail="recorded at start-up from its folder",
                    )
                )
                digests = stored.files.get(SAMPLES_FILE, b"").decode().split()
                n = mark_learned_by_sha(session, digests, number)
                logger.warning(
                    "recorded version %d from its folder; %d samples marked learned", number, n
                )
                continue
            # Never became current (or was already removed): no one can be using it.
            logger.warning("deleting version folder %d: it was never made current", number)
            store.discard(number)


def _mark_missing_folders_removed(store: VersionStore, db: Database) -> None:
    present = set(store.numbers())
    with db.write() as session:
        for row in session.scalars(select(Version).where(Version.removed_at.is_(None))):
            if row.number not in present:
                logger.warning("version %d has no folder any more; marking it removed", row.number)
                row.removed_at = time.time()
                session.add(VersionEvent(kind="removed", version=row.number, previous=None))


def _check_current(store: VersionStore, db: Database, current: int | None) -> int | None:
    with db.read() as session:
        rows = list(session.scalars(select(Version)))
    parents = {v.number: v.parent for v in rows}
    alive = {v.number for v in rows if v.removed_at is None}
    if current is not None and current in alive and store.is_valid(current):
        return current
    if not rows:
        return None  # nothing was ever recorded: a fresh start (a crash while making version 0)
    # The parent chain first: that is the version the broken one was made from.
    chain: list[int] = []
    node = parents.get(current) if current is not None else None
    while node is not None and node not in chain:
        chain.append(node)
        node = parents.get(node)
    candidates = [n for n in chain if n in alive] + sorted(alive - set(chain), reverse=True)
    for number in candidates:
        if number != current and store.is_valid(number):
            _fall_back(store, db, current, number, chain)
            return number
    raise StorageError(
        f"no valid version under {store.versions_dir}; restore a version folder from a backup, "
        "or move the data directory aside to start again from the base model"
    )


def _fall_back(
    store: VersionStore, db: Database, broken: int | None, number: int, chain: list[int]
) -> None:
    logger.error(
        "current version %s is missing or corrupt; FALLING BACK to version %d", broken, number
    )
    store.set_current(number)
    # The broken versions are those between it and the fallback on its parent chain.
    lost = [broken] if broken is not None else []
    if number in chain:
        lost += chain[: chain.index(number)]
    with db.write() as session:
        requeued = session.execute(
            update(Sample)
            .where(Sample.learned_in.in_(lost))
            .values(state=SampleState.QUEUED, learned_in=None)
        ).rowcount  # type: ignore[attr-defined]
        session.add(
            VersionEvent(
                kind="fallback",
                version=number,
                previous=broken,
                detail=f"version {broken} was missing or corrupt; {requeued} samples queued again",
            )
        )
    if requeued:
        logger.error("%d samples learned by version(s) %s are queued again", requeued, lost)
