"""``INBOX/.rejected/``: what could not be used, each with a one-line ``<name>.reason``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tailord.daemon.inbox.layout import REJECTED

logger = logging.getLogger(__name__)


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
