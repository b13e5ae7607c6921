"""A deleted and recreated inbox (or label folder) is watched again at once, and the log says so.

``settle_seconds`` and ``rescan_seconds`` are far away here: only a watch on the new folder
can find these files within seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable

import pytest

from tests.conftest import wait_for
from tests.daemon.conftest import Inbox

AT_ONCE = 10.0  # seconds: far below the settle period (60 s) and the rescan (an hour)


def rename_in(box: Inbox, rel: str, data: bytes) -> None:
    final = box.inbox / rel
    tmp = box.root / f".{final.name}"
    tmp.write_bytes(data)
    os.rename(tmp, final)  # renamed in from outside the inbox: taken at its event


def test_a_recreated_inbox_is_watched_again(
    make_inbox: Callable[..., Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tailord")
    box = make_inbox("vector", settle_seconds=60.0, rescan_seconds=3600.0)
    (box.inbox / "cat").mkdir()
    time.sleep(0.3)
    rename_in(box, "cat/0.json", b"[0, 1]")
    wait_for(lambda: box.count() == 1, timeout=AT_ONCE)

    shutil.rmtree(box.inbox)
    wait_for(lambda: "was deleted" in caplog.text, timeout=AT_ONCE)
    box.inbox.mkdir()
    wait_for(lambda: "watching it again" in caplog.text, timeout=AT_ONCE)
    (box.inbox / "dog").mkdir()
    time.sleep(0.3)  # the new label folder's own watch
    rename_in(box, "dog/1.json", b"[1, 0]")

    wait_for(lambda: box.count() == 2, timeout=AT_ONCE)
    assert box.alive()


def test_a_recreated_label_folder_is_watched_again(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector", settle_seconds=60.0, rescan_seconds=3600.0)
    (box.inbox / "cat").mkdir()
    time.sleep(0.3)
    rename_in(box, "cat/0.json", b"[0, 1]")
    wait_for(lambda: box.count() == 1, timeout=AT_ONCE)

    shutil.rmtree(box.inbox / "cat")
    (box.inbox / "cat").mkdir()
    time.sleep(0.3)
    rename_in(box, "cat/1.json", b"[1, 0]")

    wait_for(lambda: box.count() == 2, timeout=AT_ONCE)


def test_an_inbox_moved_away_and_replaced_is_watched_at_its_path(
    make_inbox: Callable[..., Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tailord")
    box = make_inbox("vector", settle_seconds=60.0, rescan_seconds=3600.0)
    old = box.root / "old-inbox"
    os.rename(box.inbox, old)
    wait_for(lambda: "was moved away" in caplog.text, timeout=AT_ONCE)
    fresh = box.root / "fresh"
    (fresh / "cat").mkdir(parents=True)
    os.rename(fresh, box.inbox)  # a folder renamed into the inbox's place
    wait_for(lambda: "watching it again" in caplog.text, timeout=AT_ONCE)
    time.sleep(0.3)
    rename_in(box, "cat/0.json", b"[0, 1]")
    (old / "cat").mkdir()
    (old / "cat" / "stray.json").write_bytes(b"[5, 5]")  # the old folder is not watched

    wait_for(lambda: box.count() == 1, timeout=AT_ONCE)
    time.sleep(1.0)
    assert box.count() == 1
