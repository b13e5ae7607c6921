"""Partial writes: only finished files are ingested, whatever way they arrive."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from tests.conftest import wait_for
from tests.daemon.conftest import Inbox


def slow_write(
    path: os.PathLike[str], data: bytes, step: int, pause: float, closing: threading.Event
) -> None:
    with open(path, "wb") as stream:  # kept open all along, as a slow writer does
        for start in range(0, len(data), step):
            stream.write(data[start : start + step])
            stream.flush()
            time.sleep(pause)
        closing.set()


@pytest.mark.slow
def test_slow_writer_never_yields_a_truncated_sample(make_inbox: Callable[..., Inbox]) -> None:
    # Text is the worst case: any prefix of it is valid text.
    box = make_inbox("text", settle_seconds=1.0)
    (box.inbox / "note").mkdir()
    text = b"a slow writer, three bytes at a time"
    json_vec = b'{"vector": [1, 2, 3, 4, 5, 6, 7, 8]}'
    closing = [threading.Event(), threading.Event()]
    writers = [
        threading.Thread(target=slow_write, args=(box.inbox / "note" / name, data, 3, 0.3, done))
        for name, data, done in [("slow.txt", text, closing[0]), ("v.json", json_vec, closing[1])]
    ]
    for writer in writers:
        writer.start()
    # Rescan all along, far more often than the daemon would: every scan sees a partial file.
    while any(writer.is_alive() for writer in writers):
        box.ingestor.scan_now()
        time.sleep(0.05)
        # Set just before the close: nothing may happen to a file before its writer is done.
        assert box.count() == 0 or closing[0].is_set()
        assert not box.rejected.exists() or closing[1].is_set()
    wait_for(lambda: box.count() == 1, timeout=20)
    assert box.samples()[0][:3] == ("note", "text", text)
    # The vector was of the wrong kind for a text model: refused whole, not half-written.
    assert "vector sample but the model takes text" in box.reason("v.json")


def test_ignored_names_wait_until_renamed(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector")
    folder = box.inbox / "cat"
    folder.mkdir()
    names = [".hidden.json", "a.json.tmp", "b.json.part"]
    for i, name in enumerate(names):
        (folder / name).write_bytes(f"[{i}, 1]".encode())
    time.sleep(0.5)
    box.ingestor.scan_now()
    time.sleep(0.5)
    assert box.count() == 0
    assert not box.rejected.exists()
    for i, name in enumerate(names):
        os.rename(folder / name, folder / f"renamed{i}.json")
    wait_for(lambda: box.count() == 3, timeout=20)


def test_files_and_label_folders_moved_in_count(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector")
    outside = box.root / "staging"
    (outside / "dog").mkdir(parents=True)
    for i in range(20):
        (outside / "dog" / f"{i}.json").write_bytes(f"[{i}, 2]".encode())
    (outside / "one.json").write_bytes(b"[100, 2]")
    (box.inbox / "cat").mkdir()
    os.rename(outside / "one.json", box.inbox / "cat" / "one.json")
    os.rename(outside / "dog", box.inbox / "dog")
    wait_for(lambda: box.count() == 21, timeout=20)
    assert {row[0] for row in box.samples()} == {"cat", "dog"}


def test_files_already_there_at_start_are_ingested(make_inbox: Callable[..., Inbox]) -> None:
    first = make_inbox("vector")
    first.watcher.stop()
    first.ingestor.stop()
    for i in range(5):
        first.write(f"cat/{i}.json", f"[{i}, 3]".encode())
    second = make_inbox("vector")  # same folders: its start-up scan finds them
    wait_for(lambda: second.count() == 5, timeout=20)


def test_burst_rescan_finds_files_no_event_announced(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector", burst_events=50)
    # Files the watcher cannot see (written while it is stopped), then a burst it does see.
    box.watcher.stop()
    for i in range(30):
        box.write(f"cat/quiet{i}.json", f"[{i}, 4]".encode())
    from tailord.daemon.inbox.watcher import Watcher

    # The loud folder exists before the watcher starts, so each loud file raises its two
    # events (created, closed): a folder made during the burst may get its inotify watch
    # only after its files are written, and then they raise one (synthetic) event each,
    # fewer than burst_events in all.
    (box.inbox / "dog").mkdir()
    box.watcher = Watcher(box.inbox, box.pending)
    box.watcher.start()
    for i in range(40):
        box.write(f"dog/loud{i}.json", f"[{i}, 5]".encode())
    # No periodic rescan runs in this harness: only the post-burst rescan finds the quiet ones.
    wait_for(lambda: box.count() == 70, timeout=20)
