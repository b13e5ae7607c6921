"""Exceptions of the daemon room; :class:`TailordError` is the root of every tailord error.

The root lives in ``tailord.errors`` so that ``storage`` and ``trainer`` derive from it too
(``StorageError``, ``TrainerError``); it is re-exported here for the daemon's modules.
"""

from __future__ import annotations

from tailord.errors import TailordError

__all__ = ["AlreadyRunning", "ConfigError", "DataDirLocked", "TailordError"]


class ConfigError(TailordError):
    """The configuration is not valid; see docs/configuration.md for every key and default."""


class AlreadyRunning(TailordError):
    """Another tailord is already serving on this socket; stop it or pass another --socket."""


class DataDirLocked(TailordError):
    """Another tailord is using this data directory; stop it or pass another --data-dir."""
