"""Publishing versions and bringing disk and database into agreement at start-up.

The flip of ``current`` is the commit point of a publish. The reconciliation rule
(docs/versions.md) follows from it:

- a version folder with no row that ``current`` points at was published, and the daemon
  stopped before the row was committed: its row is made from its manifest, and the samples it
  lists in ``samples.txt`` are marked learned by it;
- a version folder with no row that ``current`` does not point at never became current: it is
  deleted, and its samples stay queued;
- a row whose folder is gone is marked removed (the row stays: samples refer to it);
- ``current`` pointing at a missing or corrupt version falls back, loudly, to the nearest valid
  ancestor (else the newest valid version); the samples learned by the broken versions are
  queued again so that the next update relearns them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tailord.daemon.errors import ConfigError
from tailord.daemon.serving import Serving
from tailord.daemon.worker import SAMPLES_FILE
from tailord.storage.crash import crash_point
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
from tailord.storage.samples import mark_learned, mark_learned_by_sha
from tailord.storage.versions import WEIGHTS, VersionStore
from tailord.trainer.errors import ModelError
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec

logger = logging.getLogger(__name__)


def next_number(store: VersionStore, db: Database) -> int:
    """One more than any version number ever used (rows outlive their folders)."""
    with db.read() as session:
        highest = session.scalar(select(func.max(Version.number)))
    used = [*store.numbers(), *([] if highest is None else [highest])]
    return max(used) + 1 if used else 0


def publish(
    store: VersionStore,
    db: Database,
    serving: Serving | None,
    *,
    staging_name: str,
    number: int | None = None,
    parent: int | None,
    manifest: dict[str, Any],
    sample_ids: Sequence[int] = (),
    read_at: float | None = None,
    event: str = "published",
    record: Callable[[Session, int], None] | None = None,
) -> int:
    """Publish the candidate in ``staging/<staging_name>`` as a version, make it current.

    Order: folder published and fsynced → the new version loaded and warmed up (the old one
    still serving) → ``current`` flipped → row committed and samples marked learned → served
    by one assignment. A failure before the flip removes the candidate and leaves the old
    version current; a crash between the flip and the commit is repaired by
    :func:`reconcile`. ``number`` None takes the next free number. Samples relabeled at or
    after ``read_at`` stay queued (see mark_learned). ``record`` runs in the
    commit's transaction, with the number (the update's own row). Returns the number.
    """
    with store.lock:
        before = store.current_number()
        if number is None:
            number = next_number(store, db)
        full = {"parent": parent, "created_at": time.time(), **manifest}
        store.publish(store.staging_dir / staging_name, number, full)
        try:
            prepared = None if serving is None else serving.prepare(store, number)
            stored = store.read(number)
            store.set_current(number)
        except BaseException:
            # Abandon the candidate; the old version stays (or becomes again) current.
            if before is not None and store.current_number() != before:
                store.set_current(before)
            store.discard(number)
            raise
        crash_point("flipped")
        with db.write() as session:
            session.add(
                Version(
                    number=number,
                    parent=parent,
                    sample_count=int(manifest.get("sample_count", 0)),
                    manifest=stored.manifest,
                )
            )
            session.add(VersionEvent(kind=event, version=number, previous=parent))
            mark_learned(session, sample_ids, number, read_at=read_at)
            if record is not None:
                record(session, number)
        crash_point("committed")
        if serving is not None and prepared is not None:
            serving.swap(prepared)
    return number


def ensure_base(
    store: VersionStore, db: Database, spec: ModelSpec, base_file: Path | None = None
) -> int:
    """Create version 0: the spec's standard model, or the pretrained ``base_file``."""
    if base_file is not None:
        try:
            model = Model.from_bytes(base_file.read_bytes())
        except (OSError, ModelError) as exc:
            raise ConfigError(
                f"[versions] base {base_file} cannot be used as the base model: {exc}"
            ) from exc
        if model.spec != spec:
            raise ConfigError(
                f"the base model {base_file} is built as {model.spec.to_dict()}, but [model] "
                f"says {spec.to_dict()}; make [model] match the file, or drop [versions] base"
            )
    else:
        model = Model.base(spec)
    staging = store.new_staging("base")
    (staging / WEIGHTS).write_bytes(model.to_bytes())
    number = publish(
        store,
        db,
        None,
        staging_name="base",
        number=0,
        parent=None,
        manifest={
            "spec": spec.to_dict(),
            "labels": list(model.labels),
            "sample_count": model.sample_count,
            "metrics": {},
            **({"base_file": str(base_file)} if base_file is not None else {}),
        },
        event="base",
    )
    logger.info("created base version 0 (%s head)", spec.head)
    return number


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
