"""Start-up checks and repair, each failure one line with the path and what to do.

Before anything else touches the data directory, :func:`check_data_dir` proves it is a
writable folder (a read-only, foreign-owned or full one used to surface as a long SQLAlchemy
traceback without the path); :func:`check_backbone` finds a custom backbone's module without
importing it (a typo used to surface at the first update, minutes or days later).

:func:`repair` runs start-up repair (reconcile, the base version). When the disk refuses it
(full, failing) and a valid version is current, the daemon serves that version read-only
rather than dying into a restart loop: :class:`Repair` says why, and the main loop retries
the repair on each wake-up (it is idempotent), leaving read-only mode once it succeeds.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from tailord.daemon.config import Config
from tailord.daemon.disk import disk_problem
from tailord.daemon.errors import ConfigError, TailordError
from tailord.daemon.versions.publish import ensure_base
from tailord.daemon.versions.reconcile import reconcile
from tailord.storage.db import Database, open_database
from tailord.storage.errors import StorageError
from tailord.storage.versions import VersionStore
from tailord.trainer.spec import ModelSpec

logger = logging.getLogger(__name__)

PROBE = ".tailord-write-probe"  # with the pid: a second daemon's probe is its own


class StartupError(TailordError):
    """tailord cannot start on this data directory; the line says which path and what to do."""


def check_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and prove a file can be written in it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f"{PROBE}.{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"tailord\n" * 512)  # a full disk refuses the data, not the name
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Full, but ours: the current version can still be served (see repair()).
            logger.warning("the data directory is full: %s", disk_problem(exc, data_dir))
            return
        raise StartupError(f"cannot use the data directory: {_describe(exc, data_dir)}") from None


def check_inbox(inbox: Path, make: Callable[[Path], None] | None = None) -> None:
    """Create the inbox if needed (with ``make``: privacy.py's modes); one line if that is
    refused."""
    try:
        if make is None:
            inbox.mkdir(parents=True, exist_ok=True)
        else:
            make(inbox)
    except OSError as exc:
        raise StartupError(f"cannot create the inbox: {_describe(exc, inbox)}") from None


def open_db(config: Config) -> Database:
    """The database, or one line saying why it cannot be opened."""
    try:
        return open_database(config.database)
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(
            f"cannot open the database {config.database}: {_describe(exc, config.data_dir)}"
        ) from None


def open_store(config: Config) -> VersionStore:
    """The version folders (``versions/``, ``staging/`` made if missing), or one line."""
    try:
        return VersionStore(config.data_dir)
    except OSError as exc:
        raise StartupError(
            f"cannot make the version folders: {_describe(exc, config.data_dir)}"
        ) from None


def check_backbone(spec: ModelSpec) -> None:
    """A custom backbone's module can be found (not imported: that may import torch)."""
    if not spec.is_custom:
        return
    module = spec.backbone.partition(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:  # a parent package that is missing or broken
        found, why = None, f"{exc.__class__.__name__}: {exc}"
    else:
        why = "no such module"
    if found is None:
        raise ConfigError(
            f'[model] backbone = "{spec.backbone}": cannot find the module {module!r} '
            f"({why}); install the package that provides it into tailord's Python "
            "environment, or fix the name"
        )


@dataclass(frozen=True)
class Repair:
    """The version to serve, and why the daemon is read-only (None: it is not)."""

    current: int
    read_only: str | None = None


def repair(config: Config, store: VersionStore, db: Database) -> Repair:
    """Start-up repair, or read-only serving of the current version when the disk refuses it."""
    try:
        current = reconcile(store, db)
        if current is None:
            current = ensure_base(store, db, config.model, config.versions.base_file)
        return Repair(current)
    except (SQLAlchemyError, OSError, StorageError) as exc:
        problem = disk_problem(exc, config.data_dir)
        if problem is None:
            raise
        number = _servable(store)
        if number is None:
            raise StartupError(
                f"cannot repair or create a version: {problem}; then start tailord again"
            ) from None
        reason = (
            f"read-only: start-up repair failed ({problem}); serving version {number}, no "
            "update runs until the repair succeeds (retried on each check)"
        )
        logger.error("%s", reason)
        return Repair(number, reason)


def _servable(store: VersionStore) -> int | None:
    try:
        number = store.current_number()
    except StorageError:
        return None
    return number if number is not None and store.is_valid(number) else None


def _describe(exc: BaseException, where: Path) -> str:
    problem = disk_problem(exc, where)
    if problem is not None:
        return problem
    text = " ".join(str(exc).split())
    return f"{text}; check that {where} is a folder tailord's user can write"
