"""Using the current version without the daemon: :func:`load_current`.

    from tailord.storage import load_current
    current = load_current("/var/lib/tailord")
    current.number, current.manifest["labels"], current.weights  # bytes of a safetensors file

``current`` is resolved once, to a version folder, and every file is then read from that
folder: versions are immutable, so what is read is one consistent version even while the
daemon flips ``current`` meanwhile. The daemon keeps at least the current version and its
parent; if an old folder is removed between the resolve and the read (several swaps in a
moment), the read starts over from a fresh resolve. Nothing here writes to the data dir.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailord.storage.errors import CorruptVersion, StorageError, VersionNotFound
from tailord.storage.versions import WEIGHTS, read_folder

ATTEMPTS = 3


@dataclass(frozen=True)
class CurrentVersion:
    """One version's verified files, read from one folder."""

    number: int
    folder: Path
    manifest: dict[str, Any]
    weights: bytes  # a safetensors file; load it with safetensors, never with pickle
    sha256: str  # of the weights, verified against the manifest


def resolve_current(data_dir: str | os.PathLike[str]) -> tuple[int, Path]:
    """The number and folder ``data_dir/current`` points at now."""
    link = Path(data_dir) / "current"
    try:
        target = os.readlink(link)
    except FileNotFoundError as exc:
        raise VersionNotFound(
            f"{link} does not exist; is {data_dir} tailord's data directory, "
            "and has the daemon started there once?"
        ) from exc
    name = Path(target).name
    if not name.isdigit():
        raise CorruptVersion(f"{link} points at {target!r}, which is not a version folder")
    return int(name), (link.parent / target)


def load_current(data_dir: str | os.PathLike[str]) -> CurrentVersion:
    """Read the current version's manifest and weights, verified against the manifest."""
    last: StorageError | None = None
    for _ in range(ATTEMPTS):
        number, folder = resolve_current(data_dir)
        try:
            stored = read_folder(folder, number)
        except StorageError as exc:
            # Only worth another try if current moved on meanwhile; else it is really broken.
            if resolve_current(data_dir)[0] == number:
                raise
            last = exc
            continue
        weights = stored.files[WEIGHTS]
        return CurrentVersion(
            number=number,
            folder=folder,
            manifest=stored.manifest,
            weights=weights,
            sha256=hashlib.sha256(weights).hexdigest(),
        )
    assert last is not None
    raise last
