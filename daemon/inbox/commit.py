"""Committing what the ingestor read, and what becomes of the files after.

A file is removed from the inbox only after the transaction holding its sample has committed
(``synchronous=FULL``), so a crash at any point leaves each sample either committed or still
in the inbox; a re-ingest of a committed one is a no-op because samples are keyed by sha256.
A commit that fails (disk full, I/O error) leaves the files where they are, says why in
``stats.last_error``, and is retried until it succeeds. A refused file is moved to
``.rejected/`` at once; its record is written with the next commit.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from tailord.daemon.config import IngestConfig
from tailord.daemon.inbox.layout import relative
from tailord.daemon.inbox.rejected import reject
from tailord.daemon.inbox.room import QueueRoom
from tailord.daemon.inbox.settling import Settling
from tailord.daemon.inbox.stats import IngestStats
from tailord.daemon.inbox.watcher import PendingPaths
from tailord.daemon.text import escape
from tailord.storage.db import Database
from tailord.storage.forget import RELEARN_MARK, release
from tailord.storage.requeue import rejected_among
from tailord.storage.samples import (
    Added,
    NewRejection,
    NewSample,
    add_rejections,
    add_samples,
)

logger = logging.getLogger(__name__)

# Disk full, I/O error, read-only or locked database: the files stay, the commit is retried.
COMMIT_ERRORS = (
    SQLAlchemyError,
    sqlite3.Error,
    OSError,
)


class Committer:
    """Commits samples with the rejection records gathered since the last commit, then
    removes their files, counts them and wakes the daemon (``on_ingested``).

    A failed commit waits ``[ingest] retry_seconds`` (or until ``stop`` is set) and queues its files
    on ``pending`` again. One commit at a time may also run on a thread of its own
    (:meth:`submit`), while the ingestor decodes the next chunk.
    """

    def __init__(
        self,
        inbox: Path,
        db: Database,
        settling: Settling,
        pending: PendingPaths,
        room: QueueRoom,
        stats: IngestStats,
        on_ingested: Callable[[int], None],
        on_rejected: Callable[[str, str], None] | None,
        options: IngestConfig,
        stop: threading.Event,
    ) -> None:
        self.inbox = inbox
        self.db = db
        self.settling = settling
        self.pending = pending
        self.room = room
        self.stats = stats
        self.on_ingested = on_ingested
        self.on_rejected = on_rejected
        self.options = options
        self._stop = stop
        self._rejections: list[NewRejection] = []  # recorded with the next commit
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tailord-commit")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

    def commit(self, samples: list[NewSample], files: list[Path]) -> int:
        """Commit ``samples`` (and pending rejection records), then remove ``files``.

        Returns the number of samples added, or -1 when the commit failed: then nothing is
        removed, the files are queued again after ``retry_seconds``, and status says why.
        """
        if not samples and not self._rejections:
            return 0
        rejections = self._rejections[:]
        try:
            result = self.write(samples, rejections)
        except COMMIT_ERRORS as exc:
            self._failed(exc, samples, files)
            return -1
        del self._rejections[: len(rejections)]
        return self.account(result, samples, files)

    def submit(self, samples: list[NewSample]) -> Future[Added]:
        """Commit ``samples`` on the commit thread; :meth:`finish` waits for it."""
        return self._pool.submit(self.write, samples, [])

    def finish(self, commit: Future[Added], samples: list[NewSample]) -> int:
        """Wait for a commit running on the commit thread; returns as :meth:`commit`."""
        try:
            result = commit.result()
        except COMMIT_ERRORS as exc:
            self._failed(exc, samples, [])
            return -1
        return self.account(result, samples, [])

    def write(self, samples: list[NewSample], rejections: list[NewRejection]) -> Added:
        """The transaction itself; it touches no other state, so it may run on any thread."""
        with self.db.write() as session:
            # Dropped as NAME.relearn.EXT: learned even if that content was forgotten before.
            relearn = [s.sha256 for s in samples if RELEARN_MARK in s.source.rpartition("/")[2]]
            if relearn:
                release(session, relearn)
            result = add_samples(session, samples)
            add_rejections(session, rejections)
        return result

    def _failed(self, exc: BaseException, samples: list[NewSample], files: list[Path]) -> None:
        self.stats.last_error = (
            f"could not commit {len(samples)} samples ({' '.join(str(exc).split())[:300]}); "
            "they stay in the inbox and ingest resumes by itself once the disk has room "
            "and the database is writable"
        )
        logger.error(
            "%s; retrying in %.0fs", escape(self.stats.last_error), self.options.retry_seconds
        )
        self._stop.wait(self.options.retry_seconds)
        for path in files:
            self.pending.add(path)

    def account(self, result: Added, samples: list[NewSample], files: list[Path]) -> int:
        """What follows a durable commit: remove the files, count, wake the daemon."""
        self.stats.last_error = None
        self.stats.last_commit_at = time.time()
        refused = self._still_rejected(samples) if result.duplicates else {}
        for sample, path in zip(samples, files, strict=False):  # files: one per sample, or none
            if sample.sha256 in refused:
                self._say_rejected(path, refused[sample.sha256])
            else:
                self.remove(path)
        self.stats.ingested += result.added
        self.stats.duplicates += result.duplicates
        self.stats.relabeled += result.relabeled
        fresh = result.added + result.relabeled
        self.room.grew(fresh, sum(len(s.payload) for s in samples))
        if samples:
            logger.info(
                "ingested %d samples (%d already known, %d relabeled)",
                result.added,
                result.duplicates,
                result.relabeled,
            )
        if result.forgotten:
            logger.warning(
                "%d dropped samples were forgotten before and are not learned again; to learn "
                "one again, drop it as NAME%sEXT",
                result.forgotten,
                RELEARN_MARK,
            )
        if fresh:
            self.on_ingested(fresh)
        return result.added

    def _still_rejected(self, samples: list[NewSample]) -> dict[str, int]:
        """Samples dropped again that the gate had rejected: ``{sha256: id}``."""
        with self.db.read() as session:
            found = rejected_among(session, (s.sha256 for s in samples))
        if found:
            logger.warning(
                "%d of the samples just dropped were rejected by an earlier update's gate and "
                "stay rejected; `tailorctl requeue ID...` (or --state rejected) queues them again",
                len(found),
            )
        return found

    def _say_rejected(self, path: Path, sample_id: int) -> None:
        # Not "already known": the person dropping it again wants it learned, and it stays
        # rejected until requeued. The file goes to .rejected/ with that reason.
        reason = (
            f"is sample {sample_id}, which an earlier update's gate rejected: it stays "
            f"rejected; `tailorctl requeue {sample_id}` puts it back in the queue"
        )
        try:
            reject(self.inbox, path, reason)
        except OSError as exc:
            logger.warning("%s %s (%s)", escape(path), escape(reason), escape(exc))
            self.remove(path)

    def remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            # Committed already, so not taken again while the daemon runs; after a restart a
            # scan finds it and dedupes it by sha256.
            logger.warning("ingested %s but could not remove it: %s", escape(path), escape(exc))
            self.settling.unmovable(path)

    def refused_lines(self, record: NewRejection, count: int) -> None:
        """Record a ``.jsonl`` file's ``count`` refused lines with the next commit."""
        self.stats.rejected += count
        self._rejections.append(record)

    def reject(self, path: Path, reason: str) -> None:
        """Move a refused file to ``.rejected/`` with its reason, recorded with the next
        commit; a file that cannot be moved is recorded and left alone until it changes."""
        self.stats.rejected += 1
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        record = NewRejection(
            source=relative(self.inbox, path),
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            reason=reason,
            moved=True,
        )
        try:
            reject(self.inbox, path, reason)
        except OSError as exc:
            # A read-only inbox: keep the reason in the database and leave the file alone
            # until it changes, instead of refusing it again at every scan.
            logger.error(
                "rejected %s (%s) but cannot move it to .rejected: %s",
                *map(escape, (path, reason, exc)),
            )
            record = NewRejection(
                record.source, record.size, record.mtime_ns, record.reason, moved=False
            )
            self.settling.skip(record.source, record.size, record.mtime_ns)
        self._rejections.append(record)
        if self.on_rejected is not None:
            self.on_rejected(record.source, reason)
