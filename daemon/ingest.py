"""The ingestor: turns inbox files into durable samples, in batches, on its own thread.

A file is removed from the inbox only after the transaction holding its sample has committed
(``synchronous=FULL``), so a crash at any point leaves each sample either committed or still
in the inbox; a re-ingest of a committed one is a no-op because samples are keyed by sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from tailord.daemon.config import IngestConfig
from tailord.daemon.inbox import PendingPaths, Refused, label_of, read_entry, reject, scan
from tailord.storage.db import Database
from tailord.storage.samples import NewSample, add_samples, vector_dim
from tailord.trainer.errors import DecodeError
from tailord.trainer.inputs import decode_vector, vector_to_bytes

logger = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


@dataclass
class IngestStats:
    """Counters since start-up, shown in status."""

    ingested: int = 0
    duplicates: int = 0
    rejected: int = 0
    last_error: str | None = None


class Ingestor:
    """Consumes :class:`PendingPaths` and commits what it reads, batch by batch."""

    def __init__(
        self,
        inbox: Path,
        db: Database,
        options: IngestConfig,
        dim: int | None,
        pending: PendingPaths,
        on_ingested: Callable[[int], None],
    ) -> None:
        self.inbox = inbox
        self.db = db
        self.options = options
        self.pending = pending
        self.on_ingested = on_ingested
        self.stats = IngestStats()
        self._fixed_dim = dim
        with db.read() as session:
            self._dim = dim or vector_dim(session)
        self._stop = threading.Event()
        self._unmovable: set[Path] = set()
        # Scanned files still being written, with when to look at them again.
        self._unsettled: dict[Path, float] = {}
        self._thread = threading.Thread(target=self._run, name="tailord-ingest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in hand, then return; what is left stays in the inbox."""
        self._stop.set()
        self._thread.join(timeout=30)

    def scan_now(self) -> int:
        """Queue every entry in the inbox (settled ones now, others once settled)."""
        return sum(self._queue_when_settled(path) for path in scan(self.inbox))

    def _queue_when_settled(self, path: Path) -> bool:
        """Queue ``path`` if unchanged for ``settle_seconds``, else look again later.

        Scans find files that no event announced, and such a file may still be open for
        writing; its age is the only sign available that the writer is done.
        """
        if path in self._unmovable:
            return False
        try:
            age = time.time() - os.lstat(path).st_mtime
        except FileNotFoundError:
            self._unsettled.pop(path, None)
            return False
        if age < self.options.settle_seconds:
            self._unsettled[path] = time.monotonic() + self.options.settle_seconds - age
            return False
        self._unsettled.pop(path, None)
        self.pending.add(path)
        return True

    def _recheck_unsettled(self) -> None:
        now = time.monotonic()
        for path, due in list(self._unsettled.items()):
            if due <= now:
                self._queue_when_settled(path)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._recheck_unsettled()
            paths = self.pending.take(self.options.batch_files, timeout=0.25)
            if not paths:
                continue
            deadline = time.monotonic() + self.options.batch_seconds
            while len(paths) < self.options.batch_files and time.monotonic() < deadline:
                more = self.pending.take(
                    self.options.batch_files - len(paths), max(0.0, deadline - time.monotonic())
                )
                if not more:
                    break
                paths.extend(more)
            try:
                self.process(paths)
            except Exception:
                logger.exception("ingest batch failed; its files stay in the inbox")

    def process(self, paths: list[Path]) -> int:
        """Read, validate and commit ``paths``; returns how many new samples were committed."""
        batch: list[tuple[Path, NewSample]] = []
        for path in dict.fromkeys(paths):
            if path.parent == self.inbox and path.is_dir() and not path.is_symlink():
                for entry in scan(self.inbox):  # a new label folder (see the watcher)
                    if entry.parent == path:
                        self._queue_when_settled(entry)
                continue
            sample = self._read(path)
            if sample is not None:
                batch.append((path, sample))
        if not batch:
            return 0
        try:
            with self.db.write() as session:
                added = add_samples(session, [sample for _, sample in batch])
        except SQLAlchemyError as exc:
            # Disk full, I/O error, locked for too long: nothing is acknowledged, the files
            # stay, and the batch is retried after a pause.
            self.stats.last_error = f"could not commit samples: {exc.__class__.__name__}: {exc}"
            logger.error("%s; retrying in %.0fs", self.stats.last_error, RETRY_SECONDS)
            self._stop.wait(RETRY_SECONDS)
            for path, _ in batch:
                self.pending.add(path)
            return 0
        self.stats.last_error = None
        for path, _ in batch:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                # Committed already; a later scan finds it again and dedupes it by sha256.
                logger.warning("ingested %s but could not remove it: %s", path, exc)
                self._unmovable.add(path)
        self.stats.ingested += added
        self.stats.duplicates += len(batch) - added
        logger.info("ingested %d samples (%d already known)", added, len(batch) - added)
        if added:
            self.on_ingested(added)
        return added

    def _read(self, path: Path) -> NewSample | None:
        try:
            label = label_of(self.inbox, path)
            data, st = read_entry(self.inbox, path, self.options.max_file_bytes)
            vector = decode_vector(data, path.suffix.lower())
            if self._dim is not None and vector.shape[0] != self._dim:
                raise Refused(
                    f"has {vector.shape[0]} values but this model takes {self._dim}; "
                    "send vectors of the model's size"
                )
            self._dim = self._dim or int(vector.shape[0])
            payload = vector_to_bytes(vector)
        except (Refused, DecodeError) as exc:
            self._reject(path, str(exc))
            return None
        except FileNotFoundError:
            return None  # gone before we got to it (moved away or already ingested)
        except PermissionError as exc:
            self._reject(path, f"cannot be read ({exc.strerror}); make it readable by tailord")
            return None
        return NewSample(
            sha256=hashlib.sha256(payload).hexdigest(),
            label=label,
            kind="vector",
            payload=payload,
            source=str(path.relative_to(self.inbox)),
            size=st.st_size,
        )

    def _reject(self, path: Path, reason: str) -> None:
        self.stats.rejected += 1
        try:
            reject(self.inbox, path, reason)
        except OSError as exc:
            logger.error("could not move %s to %s: %s", path, ".rejected", exc)
            self._unmovable.add(path)
