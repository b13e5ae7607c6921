"""An ingestor over a real inbox folder, a real watchdog observer and a real SQLite file."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tailord.daemon.config import IngestConfig
from tailord.daemon.inbox.ingest import Ingestor
from tailord.daemon.inbox.layout import REJECTED
from tailord.daemon.inbox.watcher import PendingPaths, Watcher
from tailord.storage.db import Database, open_database
from tests.conftest import wait_for


@dataclass
class Inbox:
    root: Path
    db: Database
    ingestor: Ingestor
    watcher: Watcher
    pending: PendingPaths
    woken: list[int] = field(default_factory=list)

    @property
    def inbox(self) -> Path:
        return self.ingestor.inbox

    @property
    def rejected(self) -> Path:
        return self.inbox / REJECTED

    def write(self, rel: str, data: bytes) -> Path:
        """Write a file in place (open, write, close: the watcher sees the close)."""
        path = self.inbox / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db.path) as conn:
            return conn.execute(sql, args).fetchall()

    def samples(self) -> list[tuple[Any, ...]]:
        """``(label, kind, payload, source, state)`` of every stored sample, by id."""
        return self.rows("SELECT label, kind, payload, source, state FROM samples ORDER BY id")

    def count(self) -> int:
        return int(self.rows("SELECT count(*) FROM samples")[0][0])

    def reason(self, name: str, timeout: float = 20) -> str:
        path = self.rejected / f"{name}.reason"
        wait_for(path.exists, timeout=timeout)
        text = path.read_text()
        assert text.endswith("\n")
        assert text.count("\n") == 1, text
        return text

    def alive(self) -> bool:
        return self.ingestor._thread.is_alive()


@pytest.fixture
def make_inbox() -> Iterator[Callable[..., Inbox]]:
    made: list[Inbox] = []
    root = Path(tempfile.mkdtemp(prefix="td-in-", dir="/tmp"))

    def make(
        input_kind: str = "vector", dim: int | None = None, task: str = "classify", **options: Any
    ) -> Inbox:
        inbox = root / "inbox"
        inbox.mkdir(exist_ok=True)
        db = open_database(root / "data" / "tailord.db")
        config = msgspec.structs.replace(
            IngestConfig(), **{"settle_seconds": 0.3, "retry_seconds": 0.2, **options}
        )
        pending = PendingPaths()
        woken: list[int] = []
        ingestor = Ingestor(
            inbox, db, config, dim, pending, woken.append, input_kind=input_kind, task=task
        )
        ingestor.start()
        watcher = Watcher(inbox, pending)
        watcher.start()
        ingestor.scan_now()
        harness = Inbox(root, db, ingestor, watcher, pending, woken)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.watcher.stop()
        harness.ingestor.stop()
        harness.db.close()
    shutil.rmtree(root, ignore_errors=True)
