"""Version folders: staging, publish, the ``current`` pointer, verified reads.

Layout of the data directory::

    versions/<N>/weights.safetensors   the weights (opaque bytes to this room)
    versions/<N>/manifest.json         version, parent, spec, labels, metrics, sha256 of each file
    current -> versions/<N>            flipped atomically
    staging/                           candidates being written; emptied at start-up

Publish order (each step durable before the next): write files in ``staging/<name>/`` →
fsync files → fsync the folder → rename into ``versions/<N>`` → fsync ``versions/`` → flip
``current``. The caller commits the version row afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailord.storage.errors import CorruptVersion, StorageError, VersionNotFound
from tailord.storage.fsync import flip_symlink, fsync_dir, sync_and_hash, write_durable

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


@dataclass(frozen=True)
class StoredVersion:
    """A version's verified manifest and file contents."""

    number: int
    manifest: dict[str, Any]
    files: dict[str, bytes]

    @property
    def weights(self) -> bytes:
        return self.files[WEIGHTS]


class VersionStore:
    """The version folders under one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.versions_dir = data_dir / "versions"
        self.staging_dir = data_dir / "staging"
        self.current_link = data_dir / "current"
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
        """Remove every staging leftover (a crashed or cancelled candidate); returns the count."""
        removed = 0
        for entry in self.staging_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        if removed:
            fsync_dir(self.staging_dir)
        return removed

    def publish(self, staging: Path, number: int, manifest: Mapping[str, Any]) -> Path:
        """Seal the candidate in ``staging`` and make it ``versions/<number>``.

        Every file in ``staging`` is fsynced and hashed into the manifest, which is written
        last; then the folder is fsynced, renamed and its new parent fsynced. On any failure
        before the rename the staging folder is removed and the error raised, so the previous
        version stays current. A failed fsync is never retried: its data may already be lost.
        """
        final = self.versions_dir / str(number)
        if final.exists():
            raise StorageError(
                f"version {number} already exists at {final}; versions are immutable, "
                "so this candidate needs a new number"
            )
        try:
            digests = {
                entry.name: sync_and_hash(entry)
                for entry in sorted(staging.iterdir())
                if entry.name != MANIFEST
            }
            full = {**manifest, "version": number, "files": digests, "published_at": time.time()}
            body = json.dumps(full, indent=2, sort_keys=True).encode() + b"\n"
            write_durable(staging / MANIFEST, body)
            fsync_dir(staging)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(self.versions_dir)
        return final

    def set_current(self, number: int) -> None:
        """Flip ``current`` to ``versions/<number>`` atomically."""
        if not (self.versions_dir / str(number)).is_dir():
            raise VersionNotFound(f"version {number} has no folder under {self.versions_dir}")
        flip_symlink(self.current_link, f"versions/{number}")
        logger.info("current is now version %d", number)

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
        folder = self.versions_dir / str(number)
        try:
            manifest = json.loads((folder / MANIFEST).read_bytes())
        except FileNotFoundError as exc:
            raise VersionNotFound(f"version {number} has no manifest in {folder}") from exc
        except ValueError as exc:
            raise CorruptVersion(f"version {number}: manifest.json is not valid JSON") from exc
        files: dict[str, bytes] = {}
        for name, digest in dict(manifest.get("files", {})).items():
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
