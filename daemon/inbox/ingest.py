"""The ingestor: turns inbox files into durable samples, in batches, on its own thread.

Files announced or scanned are settled (``settling.py``), opened without following links
(``entry.py``), decoded and checked (``checks.py``), then committed batch by batch
(``commit.py``: a file leaves the inbox only once its sample is durable); a ``.jsonl`` batch
is read line by line (``jsonl.py``). While the queue is at its cap, files wait (``room.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tailord.daemon.config import IngestConfig
from tailord.daemon.errors import TailordError
from tailord.daemon.inbox.checks import SampleChecks, new_sample
from tailord.daemon.inbox.commit import Committer
from tailord.daemon.inbox.entry import Unsettled, read_entry
from tailord.daemon.inbox.jsonl import JsonlBatches
from tailord.daemon.inbox.labels import LabelCap
from tailord.daemon.inbox.layout import Refused, check_label, is_batch, label_of, relative, scan
from tailord.daemon.inbox.room import QueueRoom
from tailord.daemon.inbox.settling import Settling
from tailord.daemon.inbox.stats import IngestStats
from tailord.daemon.inbox.watcher import PendingPaths
from tailord.daemon.text import escape
from tailord.storage.db import Database
from tailord.storage.samples import Added, NewSample, unmoved_rejections, vector_dim
from tailord.trainer.errors import DecodeError
from tailord.trainer.inputs import Decoded, Limits, decode_sample
from tailord.trainer.targets import folder_target

logger = logging.getLogger(__name__)

BURST_QUIET_SECONDS = 0.5  # events quiet this long after a burst: rescan for dropped ones


class QueueFull(TailordError):
    """The queue is at its cap ([ingest] max_queued_samples / max_queued_bytes); try again
    once an update has learned it."""


@dataclass
class _Batch:
    samples: list[NewSample] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # removed once the samples are durable


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
        self.input_kind = input_kind
        self.limits = Limits(
            max_text_chars=options.max_text_chars, max_pixels=options.max_image_pixels
        )
        self.stats = IngestStats()
        with db.read() as session:
            dim = dim or vector_dim(session)
            skip = unmoved_rejections(session)
        self._settling = Settling(inbox, options.settle_seconds, pending, skip)
        # A regression's targets are numbers, not classes: they need no cap.
        self._checks = SampleChecks(
            dim, LabelCap(options.max_labels, db) if task == "classify" else None
        )
        self._stop = threading.Event()
        self._room = QueueRoom(db, options, self.stats)
        self._commits = Committer(
            inbox,
            db,
            self._settling,
            pending,
            self._room,
            self.stats,
            on_ingested,
            on_rejected,
            options,
            self._stop,
        )
        self._jsonl = JsonlBatches(
            inbox,
            options,
            input_kind,
            self.limits,
            task,
            self._checks,
            self._commits,
            self._room,
            self._settling,
            pending,
        )
        self._thread = threading.Thread(target=self._run, name="tailord-ingest", daemon=True)

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
        self._commits.shutdown()

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
                room = self._room.room()
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
        added = self._commits.commit(batch.samples, batch.files)
        for path in batches:
            added += self._jsonl.ingest(path)
        return added

    # -- one file, one sample --------------------------------------------------------------

    def _read(self, path: Path, batch: _Batch) -> None:
        try:
            label = label_of(self.inbox, path)
            if self.task == "regress":
                label = folder_target(label)
            data, st = read_entry(self.inbox, path, self.options.max_file_bytes)
            decoded = decode_sample(data, path.suffix, self.input_kind, self.limits)
            self._checks.check(label, decoded)
        except Unsettled:
            self._settling.defer(path)
            return
        except (Refused, DecodeError) as exc:
            self._commits.reject(path, str(exc))
            return
        except FileNotFoundError:
            return  # gone before we got to it (moved away or already ingested)
        except PermissionError as exc:
            self._commits.reject(
                path, f"cannot be read ({exc.strerror}); make it readable by tailord"
            )
            return
        except OSError as exc:  # an I/O error: the file may be fine, so keep it and retry
            self.stats.last_error = f"could not read {path.name}: {exc}"
            logger.error("%s; retrying later", escape(self.stats.last_error))
            self._settling.defer(path)
            return
        batch.samples.append(new_sample(label, decoded, relative(self.inbox, path), st.st_size))
        batch.files.append(path)

    # -- samples from the socket (``POST /v1/samples``) -------------------------------------

    def checked(self, label: str, decoded: Decoded, source: str, size: int) -> NewSample:
        """A sample that came over the socket, checked as an inbox file's is (its label, its
        vector's size); raises :class:`Refused`."""
        check_label(label)
        self._checks.check_dim(decoded)
        return new_sample(label, decoded, source, size)

    def commit_offered(self, samples: list[NewSample]) -> Added:
        """Commit samples that came over the socket under the inbox's queue cap: the same
        transaction, counters and wake-up as the inbox's. Raises :class:`QueueFull`, or the
        commit's error (nothing is stored then)."""
        self._room.refresh()  # read the queue afresh: an answer depends on it
        if self._room.room() < len(samples):
            raise QueueFull(self.stats.backpressure or "the queue is full")
        result = self._commits.write(samples, [])
        self._commits.account(result, samples, [])
        return result
