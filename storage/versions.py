"""Version folders: staging, publish, the ``current`` pointer, verified reads.

Layout of the data directory (docs/versions.md describes it for other programs)::

    versions/<N>/weights.safetensors   the weights (opaque bytes to this room)
    versions/<N>/manifest.json         version, parent, spec, labels, metrics, sha256 of each file
    versions/<N>/samples.txt           sha256 of each sample the version's update learned
    current -> versions/<N>            flipped atomically
    staging/                           candidates being written; emptied at start-up

Publish order (each step durable before the next): write files in ``staging/<name>/`` →
fsync files → fsync the folder → rename into ``versions/<N>`` → fsync ``versions/`` → flip
``current``. The caller commits the version row afterwards. Each step has a labelled crash
point (``storage/crash.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailord.storage.crash import crash_point
from tailord.storage.errors import CorruptVersion, StorageError, VersionNotFound
from tailord.storage.fsync import flip_symlink, fsync_dir, sync_and_hash, temp_link, write_durable

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
# The sha256 of each sample a version's update learned, one a line: start-up reconciliation
# reads it to mark them learned when the daemon stopped between the flip and the commit.
SAMPLES_FILE = "samples.txt"


@dataclass(frozen=True)
class StoredVersion:
    """A version's verified manifest and file contents."""

    number: int
    manifest: dict[str, Any]
    files: dict[str, bytes]

    @property
    def weights(self) -> bytes:
        return self.files[WEIGHTS]


def read_folder(folder: Path, number: int) -> StoredVersion:
    """Read a version folder's files and verify each against the manifest's sha256."""
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except FileNotFoundError as exc:
        raise VersionNotFound(f"version {number} has no manifest in {folder}") from exc
    except ValueError as exc:
        raise CorruptVersion(f"version {number}: manifest.json is not valid JSON") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CorruptVersion(f"version {number}: manifest.json lists no files")
    files: dict[str, bytes] = {}
    for name, digest in manifest["files"].items():
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise CorruptVersion(f"version {number}: the manifest names a bad file {name!r}")
        try:
            data = (folder / name).read_bytes()
        except FileNotFoundError as exc:
            raise CorruptVersion(f"version {number}: {name} is missing") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptVersion(
                f"version {number}: {name} does not match the sha256 in its manifest"
            )
        files[name] = data
    if WEIGHTS not in files:
        raise CorruptVersion(f"version {number}: the manifest lists no {WEIGHTS}")
    return StoredVersion(number=number, manifest=manifest, files=files)


class VersionStore:
    """The version folders under one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.versions_dir = data_dir / "versions"
        self.staging_dir = data_dir / "staging"
        self.current_link = data_dir / "current"
        # Held around every flip of current (publish, rollback, fallback, removal) so that
        # the link on disk and the model being served change in the same order.
        self.lock = threading.RLock()
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    # -- writing -------------------------------------------------------------------------

    def new_staging(self, name: str) -> Path:
        """A fresh, empty staging folder for a candidate."""
        path = self.staging_dir / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir()
        return path

    def clear_staging(self) -> int:
        """Remove every staging leftover (a crashed or cancelled candidate, a half-made
        flip's temporary link); returns the count.

        Under the lock: a publish, import or removal in another thread finishes its own
        staging entry first, rather than losing it half-way.
        """
        removed = 0
        with self.lock:
            for entry in self.staging_dir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
            if removed:
                fsync_dir(self.staging_dir)
            tmp = temp_link(self.current_link)
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
                fsync_dir(self.root)
                removed += 1
        return removed

    def publish(self, staging: Path, number: int, manifest: Mapping[str, Any]) -> Path:
        """Seal the candidate in ``staging`` and make it ``versions/<number>``.

        Every file in ``staging`` is fsynced and hashed into the manifest, which is written
        last; then the folder is fsynced, renamed and its new parent fsynced. On any failure
        the candidate is removed and the error raised, so the previous version stays
        current. A failed fsync is never retried: its data may already be lost.
        """
        final = self.versions_dir / str(number)
        if final.exists():
            raise StorageError(
                f"version {number} already exists at {final}; versions are immutable, "
                "so this candidate needs a new number"
            )
        try:
            crash_point("staged")
            digests = {
                entry.name: sync_and_hash(entry)
                for entry in sorted(staging.iterdir())
                if entry.name != MANIFEST
            }
            full = {**manifest, "version": number, "files": digests, "published_at": time.time()}
            body = json.dumps(full, indent=2, sort_keys=True).encode() + b"\n"
            write_durable(staging / MANIFEST, body)
            crash_point("files-synced")
            fsync_dir(staging)
            crash_point("folder-synced")
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        crash_point("renamed")
        try:
            fsync_dir(self.versions_dir)
        except BaseException:
            # The rename may or may not be durable; either way the candidate is abandoned.
            self.discard(number)
            raise
        crash_point("versions-synced")
        return final

    def set_current(self, number: int) -> None:
        """Flip ``current`` to ``versions/<number>`` atomically."""
        if not (self.versions_dir / str(number)).is_dir():
            raise VersionNotFound(f"version {number} has no folder under {self.versions_dir}")
        flip_symlink(self.current_link, f"versions/{number}")
        logger.info("current is now version %d", number)

    def discard(self, number: int) -> bool:
        """Remove ``versions/<number>``: moved out in one rename, then deleted.

        Returns False if there was no such folder. Never call it for ``current``.
        """
        folder = self.versions_dir / str(number)
        if not folder.exists():
            return False
        trash = self.staging_dir / f".removed-{number}-{time.monotonic_ns()}"
        os.rename(folder, trash)
        fsync_dir(self.versions_dir)
        shutil.rmtree(trash, ignore_errors=True)
        crash_point("gc-removed")
        return True

    # -- reading -------------------------------------------------------------------------

    def current_number(self) -> int | None:
        """The version ``current`` points at, or None if there is no pointer yet."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        try:
            return int(Path(target).name)
        except ValueError as exc:
            raise CorruptVersion(
                f"{self.current_link} points at {target!r}, which is not a version folder"
            ) from exc

    def numbers(self) -> list[int]:
        """Published version numbers, ascending (folders whose names are not numbers skipped)."""
        return sorted(int(p.name) for p in self.versions_dir.iterdir() if p.name.isdigit())

    def read(self, number: int) -> StoredVersion:
        """Read a version's files and verify each against the manifest's sha256."""
        return read_folder(self.versions_dir / str(number), number)

    def is_valid(self, number: int) -> bool:
        """Whether version ``number`` exists and its files match its manifest (logs why not)."""
        try:
            self.read(number)
        except StorageError as exc:
            logger.error("version %d is not valid: %s", number, exc)
            return False
        return True
