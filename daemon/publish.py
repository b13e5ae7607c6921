"""Publishing versions and bringing disk and database into agreement at start-up.

Rule: the version folders are the truth for what exists (a folder is complete once renamed
into ``versions/``); the database follows them. A version folder without a row gets its row
from its manifest, and the samples it lists in ``samples.txt`` are marked learned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from tailord.daemon.worker import SAMPLES_FILE
from tailord.storage.db import Database
from tailord.storage.errors import StorageError
from tailord.storage.models import Update, UpdateState, Version
from tailord.storage.samples import mark_learned, mark_learned_by_sha
from tailord.storage.versions import WEIGHTS, VersionStore
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec

logger = logging.getLogger(__name__)


def publish(
    store: VersionStore,
    db: Database,
    *,
    staging_name: str,
    number: int,
    parent: int | None,
    manifest: dict[str, Any],
    sample_ids: Sequence[int] = (),
) -> None:
    """Publish the candidate in ``staging/<staging_name>`` as version ``number``, make it current.

    Order: folder published and fsynced → ``current`` flipped → row committed and samples
    marked learned. A crash between the flip and the commit is repaired by :func:`reconcile`.
    """
    full = {"parent": parent, "created_at": time.time(), **manifest}
    store.publish(store.staging_dir / staging_name, number, full)
    store.set_current(number)
    stored = store.read(number)
    with db.write() as session:
        session.add(
            Version(
                number=number,
                parent=parent,
                sample_count=int(manifest.get("sample_count", 0)),
                manifest=stored.manifest,
            )
        )
        mark_learned(session, sample_ids, number)


def ensure_base(store: VersionStore, db: Database, spec: ModelSpec) -> None:
    """Create version 0, the spec's standard model, if there is no version at all yet."""
    if store.numbers():
        return
    staging = store.new_staging("base")
    (staging / WEIGHTS).write_bytes(Model.base(spec).to_bytes())
    publish(
        store,
        db,
        staging_name="base",
        number=0,
        parent=None,
        manifest={"spec": spec.to_dict(), "labels": [], "sample_count": 0, "metrics": {}},
    )
    logger.info("created base version 0 (%s head)", spec.head)


def reconcile(store: VersionStore, db: Database) -> int:
    """Repair what a crash may have left; returns the version that should be current."""
    leftovers = store.clear_staging()
    if leftovers:
        logger.warning("removed %d unfinished candidate(s) from staging/", leftovers)
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
        known = set(session.scalars(select(Version.number)))
        for number in store.numbers():
            if number in known:
                continue
            try:
                stored = store.read(number)
            except StorageError as exc:
                logger.error("version folder %d is not valid (%s); ignoring it", number, exc)
                continue
            session.add(
                Version(
                    number=number,
                    parent=stored.manifest.get("parent"),
                    sample_count=int(stored.manifest.get("sample_count", 0)),
                    manifest=stored.manifest,
                )
            )
            digests = stored.files.get(SAMPLES_FILE, b"").decode().split()
            n = mark_learned_by_sha(session, digests, number)
            logger.warning(
                "recorded version %d from its folder; %d samples marked learned", number, n
            )
    current = store.current_number()
    if current is not None and _is_valid(store, current):
        return current
    for number in reversed(store.numbers()):
        if number != current and _is_valid(store, number):
            logger.error(
                "current version %s is missing or corrupt; falling back to version %d",
                current,
                number,
            )
            store.set_current(number)
            return number
    raise StorageError(
        f"no valid version under {store.versions_dir}; move the data directory aside to "
        "start again from the base model"
    )


def _is_valid(store: VersionStore, number: int) -> bool:
    try:
        store.read(number)
    except StorageError as exc:
        logger.error("version %d is not valid: %s", number, exc)
        return False
    return True
