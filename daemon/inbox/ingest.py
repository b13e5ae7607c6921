"""The ingestor: turns inbox files into durable samples, in batches, on its own thread.

A file is removed from the inbox only after the transaction holding its sample has committed
(``synchronous=FULL``), so a crash at any point leaves each sample either committed or still
in the inbox; a re-ingest of a committed one is a no-op because samples are keyed by sha256.
A commit that fails (disk full, I/O error) leaves the files where they are, says why in
``stats.last_error``, and is retried until it succeeds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.exc import SQLAlchemyError

from tailord.daemon.config import IngestConfig
from tailord.daemon.errors import TailordError
from tailord.daemon.inbox.entry import Unsettled, check_unchanged, open_entry, read_entry
from tailord.daemon.inbox.layout import Refused, check_label, is_batch, label_of, relative, scan
from tailord.daemon.inbox.rejected import RefusedLines, reject
from tailord.daemon.inbox.settling import Settling
from tailord.daemon.inbox.watcher import PendingPaths
from tailord.daemon.text import escape
from tailord.storage.db import Database
from tailord.storage.requeue import rejected_among
from tailord.storage.samples import (
    Added,
    NewRejection,
    NewSample,
    add_rejections,
    add_samples,
    queued_totals,
    unmoved_rejections,
    vector_dim,
)
from tailord.trainer.errors import DecodeError
from tailord.trainer.inputs import Decoded, Limits, decode_line, decode_sample
from tailord.trainer.targets import folder_target

logger = logging.getLogger(__name__)

BURST_QUIET_SECONDS = 0.5  # events quiet this long after a burst: rescan for dropped ones
TOTALS_SECONDS = 1.0  # how stale the queued totals used for back-pressure may be
MAX_CHECKED_LABELS = 1024  # labels of one .jsonl file remembered as already checked
# Disk full, I/O error, read-only or locked database: the files stay, the commit is retried.
_COMMIT_ERRORS = (
    SQLAlchemyError,
    sqlite3.Error,
    OSError,
)


class QueueFull(TailordError):
    """The queue is at its cap ([ingest] max_queued_samples / max_queued_bytes); try again
    once an update has learned it."""


@dataclass
class IngestStats:
    """Counters since start-up, shown in status."""

    ingested: int = 0
    duplicates: int = 0
    relabeled: int = 0
    rejected: int = 0
    last_error: str | None = None
    backpressure: str | None = None  # set while the queue is at its cap and files wait
    last_commit_at: float | None = None


@dataclass
class _Batch:
    samples: list[NewSample] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # removed once the samples are durable


@dataclass
class _LinesRun:
    """Where the reading of one .jsonl batch stands."""

    source: str
    refused: RefusedLines
    added: int = 0
    total: int = 0
    chunk: list[NewSample] = field(default_factory=list)


class Ingestor:
    """Consumes :class:`PendingPaths` and commits what it reads, batch by batch.

    ``input_kind`` is the model's ("vector", "text" or "image"): a sample of another kind
    is refused with a reason saying so. ``task`` is the model's: for "regress" a folder name
    or a line's ``target`` is a number, stored as its canonical text.
    """

    def __init__(
        self,
        inbox: Path,
        db: Database,
        options: IngestConfig,
        dim: int | None,
        pending: PendingPaths,
        on_ingested: Callable[[int], None],
        input_kind: str = "vector",
        on_rejected: Callable[[str, str], None] | None = None,
        task: str = "classify",
    ) -> None:
        self.inbox = inbox
        self.task = task
        self.db = db
        self.options = options
        self.pending = pending
        self.on_ingested = on_ingested
        self.on_rejected = on_rejected
        self.input_kind = input_kind
        self.limits = Limits(
            max_text_chars=options.max_text_chars, max_pixels=options.max_image_pixels
        )
        self.stats = IngestStats()
        with db.read() as session:
            self._dim = dim or vector_dim(session)
            skip = unmoved_rejections(session)
        self._settling = Settling(inbox, options.settle_seconds, pending, skip)
        self._stop = threading.Event()
        self._rejections: list[NewRejection] = []  # recorded with the next commit
        self._totals = (0, 0)
        self._totals_at = -TOTALS_SECONDS
        self._thread = threading.Thread(target=self._run, name="tailord-ingest", daemon=True)
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="tailord-commit")

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        """Whether the ingestor's thread runs (systemd's watchdog is pinged only then)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Finish the batch in hand, then return; what is left stays in the inbox."""
        self._stop.set()
        if self._thread.ident is not None:  # started (a bench may drive process() itself)
            self._thread.join(timeout=30)
        self._committer.shutdown(wait=True)

    # -- finding files ---------------------------------------------------------------------

    def scan_now(self) -> int:
        """Queue every entry in the inbox (settled ones now, others once settled)."""
        return sum(self._settling.queue_when_settled(path) for path in scan(self.inbox))

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # Files only announced as created may still be being written: settle first.
                for path in self.pending.take_created():
                    self._settling.queue_when_settled(path)
                self._settling.recheck()
                if self.pending.burst_over(self.options.burst_events, BURST_QUIET_SECONDS):
                    logger.info("a burst of inbox events is over; rescanning for dropped ones")
                    self.scan_now()
                room = self._room()
                if room <= 0:
                    self._stop.wait(0.25)
                    continue
                paths = self._take(min(room, self.options.batch_files))
                if paths:
                    self.process(paths)
            except Exception:
                logger.exception("ingest batch failed; its files stay in the inbox")
                self._stop.wait(self.options.retry_seconds)

    def _take(self, limit: int) -> list[Path]:
        paths = self.pending.take(limit, timeout=0.25)
        if not paths:
            return paths
        deadline = time.monotonic() + self.options.batch_seconds
        while len(paths) < limit and time.monotonic() < deadline:
            more = self.pending.take(limit - len(paths), max(0.0, deadline - time.monotonic()))
            if not more:
                break
            paths.extend(more)
        return paths

    def _room(self) -> int:
        """How many more samples the queue takes before back-pressure (0: files wait)."""
        now = time.monotonic()
        if now - self._totals_at >= TOTALS_SECONDS:
            with self.db.read() as session:
                self._totals = queued_totals(session)
            self._totals_at = now
        count, size = self._totals
        cap_n, cap_b = self.options.max_queued_samples, self.options.max_queued_bytes
        if count < cap_n and size < cap_b:
            self.stats.backpressure = None
            return cap_n - count
        self.stats.backpressure = (
            f"the queue holds {count} samples ({size} bytes), at the cap of "
            f"[ingest] max_queued_samples={cap_n} / max_queued_bytes={cap_b}; new files wait "
            "in the inbox until an update learns the queue (or raise the cap)"
        )
        return 0

    def process(self, paths: list[Path]) -> int:
        """Read, validate and commit ``paths``; returns how many samples were added."""
        batch = _Batch()
        batches: list[Path] = []
        for path in dict.fromkeys(paths):
            if path.parent == self.inbox and path.is_dir() and not path.is_symlink():
                for entry in scan(self.inbox, path):  # a new label folder (see the watcher)
                    self._settling.queue_when_settled(entry)
            elif is_batch(self.inbox, path):
                batches.append(path)
            else:
                self._read(path, batch)
        added = self._commit(batch.samples, batch.files)
        for path in batches:
            added += self._ingest_jsonl(path)
        return added

    # -- one file, one sample --------------------------------------------------------------

    def _read(self, path: Path, batch: _Batch) -> None:
        try:
            label = label_of(self.inbox, path)
            if self.task == "regress":
                label = folder_target(label)
            data, st = read_entry(self.inbox, path, self.options.max_file_bytes)
            decoded = decode_sample(data, path.suffix, self.input_kind, self.limits)
            self._check_dim(decoded)
        except Unsettled:
            self._settling.defer(path)
            return
        except (Refused, DecodeError) as exc:
            self._reject(path, str(exc))
            return
        except FileNotFoundError:
            return  # gone before we got to it (moved away or already ingested)
        except PermissionError as exc:
            self._reject(path, f"cannot be read ({exc.strerror}); make it readable by tailord")
            return
        except OSError as exc:  # an I/O error: the file may be fine, so keep it and retry
            self.stats.last_error = f"could not read {path.name}: {exc}"
            logger.error("%s; retrying later", escape(self.stats.last_error))
            self._settling.defer(path)
            return
        batch.samples.append(self._sample(label, decoded, relative(self.inbox, path), st.st_size))
        batch.files.append(path)

    def _sample(self, label: str, decoded: Decoded, source: str, size: int) -> NewSample:
        payload = decoded.payload
        return NewSample(
            hashlib.sha256(payload).hexdigest(), label, decoded.kind, payload, source, size
        )

    def _check_dim(self, decoded: Decoded) -> None:
        if decoded.kind != "vector":
            return
        dim = len(decoded.payload) // 4
        if self._dim is not None and dim != self._dim:
            raise Refused(
                f"has {dim} values but this model takes {self._dim}; "
                "send vectors of the model's size"
            )
        self._dim = self._dim or dim

    def _reject(self, path: Path, reason: str) -> None:
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
            self._settling.skip(record.source, record.size, record.mtime_ns)
        self._rejections.append(record)
        if self.on_rejected is not None:
            self.on_rejected(record.source, reason)

    # -- samples from the socket (``POST /v1/samples``) -------------------------------------

    def checked(self, label: str, decoded: Decoded, source: str, size: int) -> NewSample:
        """A sample that came over the socket, checked as an inbox file's is (its label, its
        vector's size); raises :class:`Refused`."""
        check_label(label)
        self._check_dim(decoded)
        return self._sample(label, decoded, source, size)

    def commit_offered(self, samples: list[NewSample]) -> Added:
        """Commit samples that came over the socket under the inbox's queue cap: the same
        transaction, counters and wake-up as the inbox's. Raises :class:`QueueFull`, or the
        commit's error (nothing is stored then)."""
        self._totals_at = -TOTALS_SECONDS  # read the queue afresh: an answer depends on it
        if self._room() < len(samples):
            raise QueueFull(self.stats.backpressure or "the queue is full")
        result = self._write(samples, [])
        self._account(result, samples, [])
        return result

    # -- committing ------------------------------------------------------------------------

    def _commit(self, samples: list[NewSample], files: list[Path]) -> int:
        """Commit ``samples`` (and pending rejection records), then remove ``files``.

        Returns the number of samples added, or -1 when the commit failed: then nothing is
        removed, the files are queued again after ``retry_seconds``, and status says why.
        """
        if not samples and not self._rejections:
            return 0
        rejections = self._rejections[:]
        try:
            result = self._write(samples, rejections)
        except _COMMIT_ERRORS as exc:
            self._failed(exc, samples, files)
            return -1
        del self._rejections[: len(rejections)]
        return self._account(result, samples, files)

    def _await(self, commit: Future[Added], samples: list[NewSample]) -> int:
        """Wait for a commit running on the commit thread; returns as :meth:`_commit`."""
        try:
            result = commit.result()
        except _COMMIT_ERRORS as exc:
            self._failed(exc, samples, [])
            return -1
        return self._account(result, samples, [])

    def _write(self, samples: list[NewSample], rejections: list[NewRejection]) -> Added:
        """The transaction itself; it touches no other state, so it may run on any thread."""
        with self.db.write() as session:
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

    def _account(self, result: Added, samples: list[NewSample], files: list[Path]) -> int:
        """What follows a durable commit: remove the files, count, wake the daemon."""
        self.stats.last_error = None
        self.stats.last_commit_at = time.time()
        refused = self._still_rejected(samples) if result.duplicates else {}
        for sample, path in zip(samples, files, strict=False):  # files: one per sample, or none
            if sample.sha256 in refused:
                self._say_rejected(path, refused[sample.sha256])
            else:
                self._remove(path)
        self.stats.ingested += result.added
        self.stats.duplicates += result.duplicates
        self.stats.relabeled += result.relabeled
        count, size = self._totals
        fresh = result.added + result.relabeled
        self._totals = (count + fresh, size + sum(len(s.payload) for s in samples))
        if samples:
            logger.info(
                "ingested %d samples (%d already known, %d relabeled)",
                result.added,
                result.duplicates,
                result.relabeled,
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
            self._remove(path)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            # Committed already, so not taken again while the daemon runs; after a restart a
            # scan finds it and dedupes it by sha256.
            logger.warning("ingested %s but could not remove it: %s", escape(path), escape(exc))
            self._settling.unmovable(path)

    # -- a .jsonl batch --------------------------------------------------------------------

    def _ingest_jsonl(self, path: Path) -> int:
        """Ingest the good lines of ``INBOX/<name>.jsonl``, reject the bad ones with their
        line numbers, and remove the file once every good line is committed."""
        opened = self._open_batch(path)
        if opened is None:
            return 0
        fd, st = opened
        run = _LinesRun(relative(self.inbox, path), RefusedLines(self.inbox, path))
        try:
            return self._ingest_lines(path, fd, st, run)
        finally:
            run.refused.discard()  # read again later (or published): the lines go

    def _ingest_lines(self, path: Path, fd: int, st: os.stat_result, run: _LinesRun) -> int:
        with os.fdopen(fd, "rb", buffering=1 << 20) as stream:
            if not self._read_lines(stream, run):
                self.pending.add(path)  # back-pressure or a failed commit: later
                return run.added
            try:
                check_unchanged(stream.fileno(), st)
            except Unsettled:
                # Still being written: the last line may be cut short. Look again later;
                # the lines committed so far are deduplicated then.
                run.added += max(0, self._commit(run.chunk, []))
                self._settling.defer(path)
                return run.added
        if run.total == 0:
            self._reject(path, "the file is empty; write one JSON object a line")
            return max(0, self._commit([], []))
        reason = ""
        if run.refused.count:
            self.stats.rejected += run.refused.count
            reason = run.refused.reason(run.total)
            self._rejections.append(
                NewRejection(run.source, st.st_size, st.st_mtime_ns, reason, moved=True)
            )
        n = self._commit(run.chunk, [])
        if n < 0:
            self.pending.add(path)
            return run.added
        if run.refused.count:
            try:
                run.refused.publish(reason)
            except OSError as exc:
                logger.error(
                    "cannot write the refused lines of %s: %s (%s)",
                    *map(escape, (path, exc, reason)),
                )
        self._remove(path)
        return run.added + n

    def _open_batch(self, path: Path) -> tuple[int, os.stat_result] | None:
        try:
            return open_entry(self.inbox, path, self.options.max_jsonl_bytes)
        except Refused as exc:
            self._reject(path, str(exc))
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._reject(path, f"cannot be opened ({exc.strerror}); make it a readable file")
        return None

    def _read_lines(self, stream: BinaryIO, run: _LinesRun) -> bool:
        """Decode every line, committing full chunks; False if it had to stop early.

        A full chunk is committed on the commit thread while the next one is decoded:
        SQLite releases the GIL while it writes and syncs, so the two overlap. At most one
        chunk is in flight, and a failed one stops the file (it is read again later).
        """
        started = time.monotonic()
        limit = min(self.options.batch_lines, self._room())
        inflight: tuple[Future[Added], list[NewSample]] | None = None
        labels: set[str] = set()
        for run.total, line in enumerate(self._lines(stream), start=1):
            if line is None:
                cap = self.options.max_line_bytes
                run.refused.add(
                    run.total, f"is over the {cap}-byte line cap; split the sample", None
                )
                continue
            if line.isspace():  # not strip(): that copies every line
                continue
            try:
                label, decoded = decode_line(line, self.input_kind, self.limits, task=self.task)
                if label not in labels:  # a file has few labels: check each once
                    check_label(label)
                    if len(labels) < MAX_CHECKED_LABELS:
                        labels.add(label)
                self._check_dim(decoded)
            except (DecodeError, Refused) as exc:
                run.refused.add(run.total, str(exc), line)
                continue
            run.chunk.append(self._sample(label, decoded, f"{run.source}:{run.total}", len(line)))
            if (
                len(run.chunk) >= limit
                or time.monotonic() - started >= self.options.batch_seconds * 10
            ):
                if inflight is not None and (n := self._await(*inflight)) >= 0:
                    run.added += n
                elif inflight is not None:
                    return False
                inflight = None
                if limit <= 0:
                    return False
                inflight = (self._committer.submit(self._write, run.chunk, []), run.chunk)
                run.chunk, started = [], time.monotonic()
                limit = min(self.options.batch_lines, self._room())
        if inflight is not None:
            if (n := self._await(*inflight)) < 0:
                return False
            run.added += n
        return True

    def _lines(self, stream: BinaryIO) -> Iterator[bytes | None]:
        """Each line of ``stream``, or None for a line over the cap (which is skipped whole
        without holding it in memory)."""
        cap = self.options.max_line_bytes
        while line := stream.readline(cap + 1):
            if len(line) > cap and not line.endswith(b"\n"):
                while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                yield None
            else:
                yield line
