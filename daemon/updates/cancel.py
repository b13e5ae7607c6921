"""Cancelling an update on request: a pending one is dropped, a running one stops at its next
mini-batch (through :meth:`Updater.stop_running`). Either way it ends ``cancelled``, its
samples stay queued, nothing is published, and its checkpoint is dropped.

A cancelled update is not retried by itself: the updater holds automatic updates until a new
sample arrives (or is requeued) or someone asks for an update (see ``Updater.held_by``).
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select

from tailord.daemon.api import bodies
from tailord.daemon.errors import TailordError
from tailord.daemon.events import UpdateFinished
from tailord.daemon.updates.rows import Ending, record
from tailord.daemon.updates.running import StopRequest
from tailord.daemon.updates.updater import Updater
from tailord.storage.models import Update, UpdateState

logger = logging.getLogger(__name__)

START_SECONDS = 5.0  # a row marked running whose worker is not started yet: wait this long
STOP_SECONDS = 120.0  # the worker stops at its next mini-batch; a huge batch may take long


class NotCancellable(TailordError):
    """That update has ended already, so there is nothing to cancel; see `tailorctl status`."""


class NoSuchUpdate(TailordError):
    """There is no such update; `tailorctl status` shows the last one."""


def cancel(updater: Updater, update_id: int | None, who: str) -> bodies.UpdateInfo:
    """Cancel update ``update_id`` (None: the pending or running one); its row once ended."""
    ending = Ending(UpdateState.CANCELLED, error=f"cancelled by {who}")
    with updater.db.write() as session:
        if update_id is None:
            row = session.scalar(
                select(Update)
                .where(Update.state.in_((UpdateState.PENDING, UpdateState.RUNNING)))
                .order_by(Update.id)
                .limit(1)
            )
            if row is None:
                raise NoSuchUpdate("no update is pending or running, so there is none to cancel")
        else:
            row = session.get(Update, update_id)
            if row is None:
                raise NoSuchUpdate(f"there is no update {update_id}; see `tailorctl status`")
        update_id, state = row.id, row.state
        if not state.active:
            raise NotCancellable(
                f"update {update_id} has already ended ({state}); there is nothing to cancel"
            )
        # Set before the commit: the main loop must not start an update of its own in the
        # moment between this cancel and the next sample.
        updater.held_by = update_id
        if state is UpdateState.PENDING:
            record(session, update_id, ending)
    if state is UpdateState.PENDING:
        logger.info("update %d cancelled before it started (%s)", update_id, ending.error)
        updater.events.publish(UpdateFinished(update_id, ending.state, None, ending.error))
    else:
        _stop(updater, update_id, ending)
    info = updater.describe(update_id)
    assert info is not None  # rows are never deleted
    if info.state != "cancelled":
        raise NotCancellable(
            f"update {update_id} ended {info.state} before it could be stopped; "
            "see `tailorctl update --show {update_id}`"
        )
    return info


def _stop(updater: Updater, update_id: int, ending: Ending) -> None:
    logger.info("update %d: stopping at its next mini-batch (%s)", update_id, ending.error)
    stop = StopRequest(ending, keep_checkpoint=False)  # cancelled: the next one starts over
    deadline = time.monotonic() + START_SECONDS
    # The row says running from the moment the main loop took it; its worker may be a few
    # milliseconds behind.
    while not updater.stop_running(update_id, stop):
        info = updater.describe(update_id)
        if info is None or not info.active or time.monotonic() > deadline:
            return
        time.sleep(0.02)
    updater.wait(update_id, STOP_SECONDS)
