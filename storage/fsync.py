"""Durable file-system steps: fsync of files and folders, atomic symlink flip."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tailord.storage.crash import crash_point


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and fsync it; the caller fsyncs the folder."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_link(link: Path) -> Path:
    """The temporary name :func:`flip_symlink` uses; a crash can leave it behind."""
    return link.with_name(f".{link.name}.tmp")


def flip_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically: readers see the old or the new target, never none.

    A temporary symlink is renamed over the old one (rename is atomic on POSIX), then the
    parent folder is fsynced so the flip survives a power cut. An error is raised as is: the
    caller decides what the flip's outcome means, never a retry of the fsync.
    """
    tmp = temp_link(link)
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    crash_point("temp-link")
    os.replace(tmp, link)
    fsync_dir(link.parent)


def sync_and_hash(path: Path) -> str:
    """fsync a written file and return the sha256 of what is on disk."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest()
