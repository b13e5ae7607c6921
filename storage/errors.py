"""Exceptions raised by the storage room; all derive from tailord's one root."""

from __future__ import annotations

from tailord.errors import TailordError


class StorageError(TailordError):
    """tailord could not read or write its data directory; check its permissions and free space."""


class VersionNotFound(StorageError):
    """No such model version; run `tailorctl versions` to list the versions there are."""


class CorruptVersion(StorageError):
    """A version's files do not match its manifest; it will not be served (roll back to another)."""
