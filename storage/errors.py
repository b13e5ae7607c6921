"""Exceptions raised by the storage room."""

from __future__ import annotations


class StorageError(Exception):
    """Something went wrong while reading or writing tailord's data directory."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class VersionNotFound(StorageError):
    """No such model version; run `tailorctl versions` to list the versions there are."""


class CorruptVersion(StorageError):
    """A version's files do not match its manifest; it will not be served."""
