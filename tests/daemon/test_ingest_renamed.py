"""Files moved into the inbox from elsewhere are taken at once, like files written in place.

A rename from a folder outside the watched tree reaches inotify as ``IN_MOVED_TO`` alone;
the watcher must take it as a finished file, not wait for a scan. ``settle_seconds`` is set
far away here, so that neither a scan nor the settle rule can be what finds these files in
time (this harness runs no periodic rescan, and ``rescan_seconds`` is an hour anyway).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import wait_for
from tests.daemon.conftest import Inbox

AT_ONCE = 10.0  # seconds: far below the settle period (30 s) and the rescan (an hour)


def test_files_renamed_in_from_a_sibling_folder_are_taken_at_once(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector", settle_seconds=30.0, rescan_seconds=3600.0)
    staging = box.root / "staging"  # beside the inbox: same filesystem, not watched
    staging.mkdir()
    (box.inbox / "cat").mkdir()
    time.sleep(1.0)  # the label folder's own scan (settling) is over before they come
    for i in range(50):
        (staging / f"{i}.json").write_bytes(f"[{i}, 6]".encode())
    started = time.monotonic()
    for i in range(50):
        os.rename(staging / f"{i}.json", box.inbox / "cat" / f"{i}.json")
    wait_for(lambda: box.count() == 50, timeout=AT_ONCE)
    print(f"50 renamed-in files committed {time.monotonic() - started:.2f}s after the first")
    assert not any((box.inbox / "cat").iterdir())
    assert {row[0] for row in box.samples()} == {"cat"}


def test_a_file_moved_in_from_another_filesystem_is_taken_at_once(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector", settle_seconds=30.0, rescan_seconds=3600.0)
    (box.inbox / "cat").mkdir()
    time.sleep(1.0)  # the label folder's own scan is over before the file comes
    elsewhere = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        (elsewhere / "far.json").write_bytes(b"[7, 7]")
        # Across filesystems this is a copy (created, written, closed) and an unlink.
        shutil.move(elsewhere / "far.json", box.inbox / "cat" / "far.json")
        wait_for(lambda: box.count() == 1, timeout=AT_ONCE)
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_a_created_file_left_open_is_taken_once_settled_not_before(
    make_inbox: Callable[..., Inbox],
) -> None:
    # Only its creation is announced (no close): the settle rule decides, no rescan needed.
    box = make_inbox("vector", settle_seconds=1.0, rescan_seconds=3600.0)
    (box.inbox / "cat").mkdir()
    time.sleep(1.0)  # the label folder's own scan is over before the file comes
    with open(box.inbox / "cat" / "open.json", "wb") as stream:
        stream.write(b"[8, ")
        stream.flush()
        time.sleep(0.5)  # still being written, within settle_seconds of the last write
        assert box.count() == 0
        stream.write(b"8]")
        stream.flush()
        written = time.monotonic()
        time.sleep(0.5)
        assert box.count() == 0  # unchanged for less than settle_seconds: not yet
        wait_for(lambda: box.count() == 1, timeout=AT_ONCE)
        assert time.monotonic() - written >= 1.0
    assert box.samples()[0][:2] == ("cat", "vector")
