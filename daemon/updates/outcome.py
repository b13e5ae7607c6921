"""A judged candidate's fate: published as the new version, its update's row recorded in the
same transaction, or rejected by the gate, its samples kept but no longer queued."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import update as sa_update

from tailord.daemon.updates.messages import Result
from tailord.daemon.updates.rows import Ending, record
from tailord.daemon.versions.history import History
from tailord.daemon.versions.publish import ManifestFields
from tailord.storage.db import Database
from tailord.storage.models import Sample, SampleState, UpdateState

logger = logging.getLogger(__name__)


def publish(
    history: History,
    update_id: int,
    staging_name: str,
    base: int,
    read_at: float,
    result: Result,
    *,
    from_base: bool,
    announce: Callable[[int, Ending], None],
) -> int:
    """Publish the promoted candidate in ``staging/<staging_name>``; its version's number.

    ``read_at``: when the worker began reading the queue (a sample relabeled since stays
    queued); ``announce`` runs once the new version is served.
    """
    number = history.publish(
        staging_name=staging_name,
        parent=base,
        manifest=ManifestFields(
            spec=result.spec,
            labels=result.labels,
            sample_count=result.sample_count,
            samples_in_update=result.new_samples,
            update=update_id,
            metrics=result.metrics,
            gate=result.gate,
            from_base=from_base,
        ),
        sample_ids=result.sample_ids,
        read_at=read_at,
        # In the publish's own transaction: whoever sees the new version also finds its
        # update succeeded, with the gate's figures.
        record=lambda session, number: record(
            session, update_id, Ending(UpdateState.SUCCEEDED, number, result=result)
        ),
        announce=lambda number: announce(update_id, Ending(UpdateState.SUCCEEDED, number)),
    )
    logger.info("update %d published version %d", update_id, number)
    return number


def reject(db: Database, update_id: int, result: Result) -> Ending:
    """Mark the samples of a candidate the gate rejected; the ending its row is to record."""
    reason = result.gate.reason
    logger.warning("update %d rejected by the gate: %s", update_id, reason)
    with db.write() as session:
        # Kept, not learned: left queued they would start the same failing update again.
        ids = result.sample_ids
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters
            session.execute(
                sa_update(Sample)
                .where(Sample.id.in_(ids[start : start + 500]))
                .values(state=SampleState.REJECTED)
            )
    return Ending(UpdateState.REJECTED, error=f"gate: {reason}", result=result)
