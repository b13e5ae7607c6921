"""Exceptions of the daemon room."""

from __future__ import annotations


class TailordError(Exception):
    """tailord could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class ConfigError(TailordError):
    """The configuration is not valid; see docs/configuration.md for every key and default."""


class AlreadyRunning(TailordError):
    """Another tailord is already serving on this socket; stop it or pass another --socket."""
