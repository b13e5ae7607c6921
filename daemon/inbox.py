"""The inbox folder: which entries count, opening them safely, rejecting them, watching it.

Layout: ``INBOX/<label>/<name>.<ext>``. Names starting with ``.`` or ending in ``.tmp`` /
``.part`` are ignored until renamed (Maildir style), and ``INBOX/.rejected/`` holds what
could not be used, each with a one-line ``<name>.reason``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

logger = logging.getLogger(__name__)

REJECTED = ".rejected"
BATCH_SUFFIX = ".jsonl"
IGNORED_SUFFIXES = (".tmp", ".part")


class Refused(Exception):
    """An inbox entry that cannot become a sample; the message is its one-line reason."""


def relative(inbox: Path, path: Path) -> str:
    """``path`` below ``inbox`` as ``label/name`` (``""`` if not below it).

    String work, not ``Path.relative_to``: this runs several times for each of thousands of
    files a second, and pathlib's parsing was a fifth of the ingestor's time.
    """
    base, text = str(inbox), str(path)
    if len(text) <= len(base) + 1 or not text.startswith(base) or text[len(base)] != "/":
        return ""
    return text[len(base) + 1 :]


def is_candidate(inbox: Path, path: Path) -> bool:
    """Whether ``path`` is an entry the ingestor should look at (it may still be refused)."""
    rel = relative(inbox, path)
    if not rel or rel.startswith(".") or "/." in rel:
        return False
    return not rel.endswith(IGNORED_SUFFIXES)


def is_batch(inbox: Path, path: Path) -> bool:
    """Whether ``path`` is a ``INBOX/<name>.jsonl`` batch (many samples, labels inside)."""
    return path.parent == inbox and path.suffix.lower() == BATCH_SUFFIX


def label_of(inbox: Path, path: Path) -> str:
    """The label an entry is filed under, or a refusal saying where it belongs."""
    rel = relative(inbox, path)
    parts = rel.split("/")
    name = parts[-1]
    if len(parts) == 2 and name.lower().endswith(BATCH_SUFFIX):
        raise Refused(
            f"is a {BATCH_SUFFIX} batch inside a label folder; move it to INBOX/{name} "
            "(each line names its own label)"
        )
    # lstat, not is_symlink(): an entry already gone raises FileNotFoundError (nothing to
    # refuse) instead of passing for a plain file.
    if len(parts) == 1 and stat.S_ISLNK(os.lstat(path).st_mode):
        raise Refused(
            "is a symbolic link; tailord reads only real folders and files inside the inbox, "
            "so copy them in instead"
        )
    if len(parts) != 2:
        raise Refused(f"{rel} is not inside a label folder; move it to INBOX/<label>/{name}")
    check_label(parts[0])
    return parts[0]


def check_label(label: str) -> None:
    """Refuse a label that is empty, too long or unprintable (it shows up in logs and API)."""
    if not label or not label.isprintable() or len(label) > 200:
        raise Refused(f"label {label[:40]!r} is not usable; use a short printable name")


class Unsettled(Exception):
    """The file changed while it was read: a writer still has it open; look again later."""


def open_entry(inbox: Path, path: Path, max_bytes: int) -> tuple[int, os.stat_result]:
    """Open an inbox file safely; returns its descriptor (the caller closes it) and stat.

    No symlink is followed and nothing blocks on a FIFO (see :func:`_open_entry`); then the
    descriptor must be a regular file with one link and at most ``max_bytes`` long.
    """
    fd = _open_entry(inbox, relative(inbox, path).split("/"))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("is not a regular file (a FIFO, device or folder); write a plain file")
        if st.st_nlink != 1:
            raise Refused(
                f"has {st.st_nlink} hard links; tailord removes what it ingests, "
                "so copy the file in instead of linking it"
            )
        if st.st_size > max_bytes:
            raise Refused(
                f"is {st.st_size} bytes, over the {max_bytes}-byte cap "
                "([ingest] max_file_bytes); split it or raise the cap"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_entry(inbox: Path, path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """Read an inbox file through the one descriptor :func:`open_entry` returns.

    Raises :class:`Unsettled` when the file changed while being read (a writer that keeps it
    open): such a file is looked at again later, never ingested truncated nor rejected.
    """
    fd, st = open_entry(inbox, path, max_bytes)
    try:
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 20))):
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise Refused(f"grew past the {max_bytes}-byte cap while being read; split it")
        check_unchanged(fd, st)
        if len(data) != st.st_size:
            raise Unsettled()
        return data, st
    finally:
        os.close(fd)


def check_unchanged(fd: int, before: os.stat_result) -> None:
    """Raise :class:`Unsettled` if the file behind ``fd`` changed since ``before``."""
    after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    ):
        raise Unsettled()


def _open_entry(inbox: Path, parts: list[str]) -> int:
    """Open ``INBOX/<label>/<name>`` (or ``INBOX/<name>``) with ``O_NOFOLLOW`` at each step.

    Opening the label folder and then the file through directory descriptors means a path
    swapped under us cannot redirect the read outside the inbox. ``O_NONBLOCK`` keeps a FIFO
    from hanging the ingestor.
    """
    if not 1 <= len(parts) <= 2:
        raise Refused("is not a file in a label folder; move it to INBOX/<label>/<name>")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd = os.open(inbox, flags | os.O_DIRECTORY)
    try:
        if len(parts) == 1:
            return _open_file(parts[0], flags, dir_fd)
        try:
            label_fd = os.open(parts[0], flags | os.O_DIRECTORY, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Refused(
                    f"label folder {parts[0]} is a symbolic link or not a folder; "
                    "make it a real folder inside the inbox"
                ) from exc
            raise
        try:
            return _open_file(parts[-1], flags, label_fd)
        finally:
            os.close(label_fd)
    finally:
        os.close(dir_fd)


def _open_file(name: str, flags: int, dir_fd: int) -> int:
    try:
        return os.open(name, flags | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(
                "is a symbolic link; tailord reads only regular files inside the inbox, "
                "so copy the file in instead"
            ) from exc
        raise


def _free_name(rejected: Path, name: str) -> Path:
    target = rejected / name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    counter = 1
    while target.exists() or target.is_symlink():
        target = rejected / (f"{stem}.{counter}.{suffix}" if dot else f"{stem}.{counter}")
        counter += 1
    return target


def _write_reason(target: Path, rel: Path, reason: str) -> None:
    line = " ".join(f"{rel}: {reason}".split())  # one line, whatever the reason held
    # Written aside and renamed in, so whoever watches .rejected/ never reads half a reason.
    tmp = target.with_name(f".{target.name}.reason.tmp")
    tmp.write_text(line + "\n")
    os.rename(tmp, target.with_name(target.name + ".reason"))


def reject(inbox: Path, path: Path, reason: str) -> Path:
    """Move ``path`` (the entry itself, never a symlink's target) to ``.rejected/`` with a reason.

    A symlinked label folder is moved as a whole, so nothing outside the inbox is touched.
    Raises OSError when the inbox cannot be changed (read-only): the caller records that.
    """
    rejected = inbox / REJECTED
    rejected.mkdir(exist_ok=True)
    rel = path.relative_to(inbox)
    source = path
    if len(rel.parts) >= 2 and (inbox / rel.parts[0]).is_symlink():
        source = inbox / rel.parts[0]
    target = _free_name(rejected, source.name)
    os.rename(source, target)
    _write_reason(target, rel, reason)
    logger.warning("rejected %s: %s", rel, reason)
    return target


def reject_lines(inbox: Path, path: Path, lines: bytes, reason: str) -> Path:
    """Write the refused lines of a ``.jsonl`` batch to ``.rejected/<name>`` with a reason."""
    rejected = inbox / REJECTED
    rejected.mkdir(exist_ok=True)
    target = _free_name(rejected, path.name)
    tmp = rejected / f".{target.name}.tmp"
    tmp.write_bytes(lines)
    os.rename(tmp, target)
    _write_reason(target, path.relative_to(inbox), reason)
    logger.warning("rejected lines of %s: %s", path.name, reason)
    return target


def scan(inbox: Path, folder: Path | None = None) -> Iterator[Path]:
    """Every candidate entry now in the inbox, or in one of its label folders.

    Used at start-up, by the periodic and post-burst rescans, and for a label folder that
    was created or moved in (files renamed into it before its watch existed raise no event).
    """
    if folder is not None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for inner in os.scandir(folder):
                path = Path(inner.path)
                if is_candidate(inbox, path):
                    yield path
        return
    try:
        top = list(os.scandir(inbox))
    except FileNotFoundError:
        return
    for entry in top:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from scan(inbox, Path(entry.path))
        elif is_candidate(inbox, Path(entry.path)):
            yield Path(entry.path)


class PendingPaths:
    """Paths waiting for the ingestor: an ordered set the watcher thread only adds to.

    It also counts the watcher's events since the last scan: inotify drops events silently
    when its queue (``fs.inotify.max_queued_events``, 16384 by default) overflows, which a
    burst of a few thousand files does, so a burst is followed by a rescan once it is over.
    """

    def __init__(self) -> None:
        self._paths: dict[Path, None] = {}
        self._cond = threading.Condition()
        self._events = 0
        self._last_event = 0.0

    def note_event(self) -> None:
        with self._cond:
            self._events += 1
            self._last_event = time.monotonic()

    def burst_over(self, threshold: int, quiet_seconds: float) -> bool:
        """True once, when ``threshold`` events came since the last call that returned True
        and none for ``quiet_seconds``: the moment to rescan for what inotify dropped."""
        with self._cond:
            if self._events < threshold:
                return False
            if time.monotonic() - self._last_event < quiet_seconds:
                return False
            self._events = 0
            return True

    def add(self, path: Path) -> None:
        with self._cond:
            self._paths[path] = None
            self._cond.notify()

    def take(self, limit: int, timeout: float) -> list[Path]:
        """Up to ``limit`` paths; waits at most ``timeout`` seconds for the first one."""
        if limit <= 0:
            return []
        with self._cond:
            if not self._paths:
                self._cond.wait(timeout)
            taken = list(self._paths)[:limit]
            for path in taken:
                del self._paths[path]
            return taken

    def __len__(self) -> int:
        with self._cond:
            return len(self._paths)


class _Handler(FileSystemEventHandler):
    def __init__(self, inbox: Path, pending: PendingPaths) -> None:
        self.inbox = inbox
        self.pending = pending

    def dispatch(self, event: FileSystemEvent) -> None:
        self.pending.note_event()
        super().dispatch(event)

    def _record(self, raw: str | bytes) -> None:
        path = Path(os.fsdecode(raw))
        if is_candidate(self.inbox, path):
            self.pending.add(path)

    def on_closed(self, event: FileSystemEvent) -> None:
        # Written and closed: the writer is done with it.
        if not event.is_directory:
            self._record(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        # Renamed into place (the Maildir way), or a whole label folder moved in.
        dest = Path(os.fsdecode(event.dest_path))
        if event.is_directory:
            # The ingestor looks inside it, with the settle check (see on_created).
            if is_candidate(self.inbox, dest):
                self.pending.add(dest)
        else:
            self._record(event.dest_path)

    def on_created(self, event: FileSystemEvent) -> None:
        # A new label folder: files renamed into it before its inotify watch existed raise
        # no event, so the ingestor is asked to look inside it (with the settle check).
        # Files made by link() or mknod() are never "closed after write": they are recorded
        # here so they are refused at once rather than at the next rescan.
        path = Path(os.fsdecode(event.src_path))
        if event.is_directory:
            if is_candidate(self.inbox, path):
                self.pending.add(path)
            return
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                self._record(event.src_path)


class Watcher:
    """A watchdog observer on the inbox that only records paths and returns."""

    def __init__(self, inbox: Path, pending: PendingPaths) -> None:
        self.inbox = inbox
        self._observer = Observer()
        # Only the events acted on: inotify is then not even asked for modify, open, delete
        # or attribute events, which would fill its queue (and overflow it) in a burst.
        self._observer.schedule(
            _Handler(inbox, pending),
            str(inbox),
            recursive=True,
            event_filter=[
                FileClosedEvent,
                FileMovedEvent,
                DirMovedEvent,
                FileCreatedEvent,
                DirCreatedEvent,
            ],
        )
        self._observer.daemon = True

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
