"""A ``.jsonl`` batch in the inbox: one sample a line, committed in chunks.

The good lines are ingested, the bad ones refused with their line numbers (``.rejected/``),
and the file is removed once every good line is committed. A file still being written is
looked at again later; the lines committed so far are deduplicated then.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tailord.daemon.config import IngestConfig
from tailord.daemon.inbox.checks import SampleChecks, new_sample
from tailord.daemon.inbox.commit import Committer
from tailord.daemon.inbox.entry import Unsettled, check_unchanged, open_entry
from tailord.daemon.inbox.layout import Refused, check_label, relative
from tailord.daemon.inbox.rejected import RefusedLines
from tailord.daemon.inbox.room import QueueRoom
from tailord.daemon.inbox.settling import Settling
from tailord.daemon.inbox.watcher import PendingPaths
from tailord.daemon.text import escape
from tailord.storage.samples import Added, NewRejection, NewSample
from tailord.trainer.errors import DecodeError
from tailord.trainer.inputs import Limits, decode_line

logger = logging.getLogger(__name__)

MAX_CHECKED_LABELS = 1024  # labels of one .jsonl file remembered as already checked


@dataclass
class _LinesRun:
    """Where the reading of one .jsonl batch stands."""

    source: str
    refused: RefusedLines
    added: int = 0
    total: int = 0
    chunk: list[NewSample] = field(default_factory=list)


@dataclass
class JsonlBatches:
    """Ingests ``.jsonl`` batches as the ingestor's single files are: the same checks, the
    same commits, the same back-pressure."""

    inbox: Path
    options: IngestConfig
    input_kind: str
    limits: Limits
    task: str
    checks: SampleChecks
    commits: Committer
    room: QueueRoom
    settling: Settling
    pending: PendingPaths

    def ingest(self, path: Path) -> int:
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
        commits = self.commits
        with os.fdopen(fd, "rb", buffering=1 << 20) as stream:
            if not self._read_lines(stream, run):
                self.pending.add(path)  # back-pressure or a failed commit: later
                return run.added
            try:
                check_unchanged(stream.fileno(), st)
            except Unsettled:
                # Still being written: the last line may be cut short. Look again later;
                # the lines committed so far are deduplicated then.
                run.added += max(0, commits.commit(run.chunk, []))
                self.settling.defer(path)
                return run.added
        if run.total == 0:
            commits.reject(path, "the file is empty; write one JSON object a line")
            return max(0, commits.commit([], []))
        reason = ""
        if run.refused.count:
            reason = run.refused.reason(run.total)
            record = NewRejection(run.source, st.st_size, st.st_mtime_ns, reason, moved=True)
            commits.refused_lines(record, run.refused.count)
        n = commits.commit(run.chunk, [])
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
        commits.remove(path)
        return run.added + n

    def _open_batch(self, path: Path) -> tuple[int, os.stat_result] | None:
        try:
            return open_entry(self.inbox, path, self.options.max_jsonl_bytes)
        except Refused as exc:
            self.commits.reject(path, str(exc))
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.commits.reject(path, f"cannot be opened ({exc.strerror}); make it a readable file")
        return None

    def _read_lines(self, stream: BinaryIO, run: _LinesRun) -> bool:
        """Decode every line, committing full chunks; False if it had to stop early.

        A full chunk is committed on the commit thread while the next one is decoded:
        SQLite releases the GIL while it writes and syncs, so the two overlap. At most one
        chunk is in flight, and a failed one stops the file (it is read again later).
        """
        started = time.monotonic()
        limit = min(self.options.batch_lines, self.room.room())
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
                self.checks.check(label, decoded)
            except (DecodeError, Refused) as exc:
                run.refused.add(run.total, str(exc), line)
                continue
            run.chunk.append(new_sample(label, decoded, f"{run.source}:{run.total}", len(line)))
            if (
                len(run.chunk) >= limit
                or time.monotonic() - started >= self.options.batch_seconds * 10
            ):
                if inflight is not None and (n := self.commits.finish(*inflight)) >= 0:
                    run.added += n
                elif inflight is not None:
                    return False
                inflight = None
                if limit <= 0:
                    return False
                inflight = (self.commits.submit(run.chunk), run.chunk)
                run.chunk, started = [], time.monotonic()
                limit = min(self.options.batch_lines, self.room.room())
        if inflight is not None:
            if (n := self.commits.finish(*inflight)) < 0:
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
