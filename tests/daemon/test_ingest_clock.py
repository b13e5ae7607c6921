"""Settling on the monotonic clock: a file's timestamps are never compared with the wall clock.

Files dated in the future (``touch -d '+2 hours'``, a writer whose clock runs ahead, or this
machine's wall clock stepped back) used to wait until the wall clock caught up, silently.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import wait_for
from tests.daemon.conftest import Inbox

HOURS = 3600


def future(path: Path, seconds: float) -> None:
    at = time.time() + seconds
    os.utime(path, (at, at))


def test_scanned_files_dated_in_the_future_are_taken_once_settled(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector", settle_seconds=0.3, rescan_seconds=3600.0)
    box.watcher.stop()  # only a scan finds them, as after a restart
    for i in range(5):
        future(box.write(f"cat/{i}.json", json.dumps([i, 1.0]).encode()), 2 * HOURS)
    future(box.write("dog/far.json", b"[9, 9]"), 10 * 365 * 24 * HOURS)

    box.ingestor.scan_now()

    wait_for(lambda: box.count() == 6, timeout=20)  # seconds, not hours
    wait_for(lambda: not list(box.inbox.rglob("*.json")), timeout=10)  # nothing stranded


def test_a_future_dated_file_still_being_written_waits_until_it_stops(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("text", settle_seconds=0.5, rescan_seconds=3600.0)
    box.watcher.stop()
    path = box.inbox / "a" / "grow.txt"
    path.parent.mkdir()
    with path.open("wb") as out:
        for i in range(8):
            out.write(f"part {i} ".encode())
            out.flush()
            future(path, 2 * HOURS)
            box.ingestor.scan_now()
            time.sleep(0.2)  # changed again within settle_seconds: never settled meanwhile
        assert box.count() == 0
    wait_for(lambda: box.count() == 1, timeout=20)
    [(_, _, payload, _, _)] = box.samples()
    assert payload.decode().strip().endswith("part 7")
