"""Cancelling a pending update: dropped at once, and the policy's updates held until a sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailord.daemon.events import UpdateFinished
from tailord.daemon.updates.cancel import NoSuchUpdate, NotCancellable, cancel
from tests.daemon.test_api_updates import _add, _updater


def test_a_pending_update_is_dropped_and_not_replaced(short_tmp: Path) -> None:
    updater, events = _updater(short_tmp)
    _add(updater, 4)
    pending = updater.request()
    subscription = events.subscribe()
    with pytest.raises(NoSuchUpdate):
        cancel(updater, pending.id + 1, "alice (uid 1000)")

    ended = cancel(updater, None, "alice (uid 1000)")  # None: the active one
    assert ended.id == pending.id
    assert ended.state == "cancelled"
    assert ended.error == "cancelled by alice (uid 1000)"
    event = subscription.get(timeout=1)
    assert event is not None
    assert isinstance(event.data, UpdateFinished)
    assert event.data.state == "cancelled"
    with pytest.raises(NotCancellable, match="already ended"):
        cancel(updater, pending.id, "alice (uid 1000)")
    with pytest.raises(NoSuchUpdate, match="no update is pending or running"):
        cancel(updater, None, "alice (uid 1000)")

    # The main loop's next turn (the request had woken it) starts nothing: held.
    assert updater.held_by == pending.id
    assert updater.run("4 queued and quiet") is None
    assert updater.last_update() == ended, "no update of its own was made"
    updater.release()  # a new sample
    assert updater.held_by is None
    assert updater.request().id == pending.id + 1, "asked again: a new update"
