"""The inbox's layout: which entries count, and the label each is filed under.

Layout: ``INBOX/<label>/<name>.<ext>``. Names starting with ``.`` or ending in ``.tmp`` /
``.part`` are ignored until renamed (Maildir style); ``INBOX/<name>.jsonl`` holds many samples.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

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
