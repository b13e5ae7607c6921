"""Faults while committing, a read-only inbox, and back-pressure: nothing is lost."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.conftest import wait_for
from tests.daemon.conftest import Inbox


def text(i: int, size: int = 20_000) -> bytes:
    return (f"sample {i} " * (size // 10))[:size].encode()


def test_disk_full_keeps_the_files_says_why_and_resumes(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("text")
    box.write("a/first.txt", text(0))
    wait_for(lambda: box.count() == 1, timeout=20)
    # A real SQLITE_FULL on the real file: the database may not grow past its current size.
    [(pages,)] = box.rows("PRAGMA page_count")
    limit = [pages]

    def cap(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count={limit[0]}")

    event.listen(box.db.engine, "checkout", cap)
    box.db.engine.dispose()
    for i in range(1, 6):
        box.write(f"a/{i}.txt", text(i))
    wait_for(lambda: box.ingestor.stats.last_error is not None, timeout=20)
    error = box.ingestor.stats.last_error
    assert error is not None
    assert "database or disk is full" in error
    assert "stay in the inbox" in error
    assert box.count() == 1
    # Never acknowledged: every file is still there, none rejected.
    assert len(list((box.inbox / "a").glob("*.txt"))) == 5
    assert not box.rejected.exists()
    limit[0] = 1_000_000  # the disk has room again
    wait_for(lambda: box.count() == 6, timeout=20)
    wait_for(lambda: box.ingestor.stats.last_error is None, timeout=10)
    wait_for(lambda: not list((box.inbox / "a").glob("*.txt")), timeout=10)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only for this process: a read-only remount for root (who
    ignores permission bits), permission bits for anyone else."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "--bind", str(folder), str(folder)], check=False)
    if done.returncode != 0:
        pytest.skip("root here cannot bind-mount, so no read-only inbox can be made")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_inbox_records_the_rejection_once(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector")
    box.watcher.stop()
    box.write("cat/bad.json", b"[1, ")
    box.write("cat/good.json", b"[1, 2]")
    (box.inbox / ".rejected").mkdir()
    with read_only(box.inbox):
        for _ in range(3):
            box.ingestor.scan_now()
            wait_for(lambda: not len(box.pending), timeout=10)
        wait_for(lambda: box.count() == 1, timeout=20)
        wait_for(lambda: box.rows("SELECT count(*) FROM rejections") == [(1,)], timeout=10)
        for _ in range(3):  # later scans neither retry nor record it again
            box.ingestor.scan_now()
        wait_for(lambda: not len(box.pending), timeout=10)
        assert box.rows("SELECT source, moved FROM rejections") == [("cat/bad.json", 0)]
        assert box.ingestor.stats.rejected == 1
        assert (box.inbox / "cat" / "bad.json").exists()
    [(reason,)] = box.rows("SELECT reason FROM rejections")
    assert "not valid UTF-8 JSON" in reason


def test_back_pressure_leaves_files_waiting_and_resumes(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector", max_queued_samples=3)
    for i in range(5):
        box.write(f"cat/{i}.json", f"[{i}, 1]".encode())
    wait_for(lambda: box.count() == 3, timeout=20)
    wait_for(lambda: box.ingestor.stats.backpressure is not None, timeout=10)
    message = box.ingestor.stats.backpressure
    assert message is not None
    assert "max_queued_samples=3" in message
    assert "wait in the inbox" in message
    assert len(list((box.inbox / "cat").glob("*.json"))) == 2
    assert box.count() == 3
    box.rows("UPDATE samples SET state = 'learned'")  # an update learned the queue
    wait_for(lambda: box.count() == 5, timeout=20)
    wait_for(lambda: box.ingestor.stats.backpressure is None, timeout=10)
    assert not list((box.inbox / "cat").glob("*.json"))
