"""tailord's one error root, importable from every room (daemon, storage, trainer).

This package holds nothing else, so ``storage`` and ``trainer`` can derive their errors from
:class:`TailordError` without importing each other or the daemon. Each error class's
docstring is its default message and says what to do; ``tailord serve`` turns any
``TailordError`` into one log line and exit code 2.
"""

from __future__ import annotations

__all__ = ["TailordError"]


class TailordError(Exception):
    """tailord could not do what was asked; see the log for the cause."""

    def __init__(self, message: str | None = None) -> None:
        # Raising the bare class still gives a readable message: its docstring.
        super().__init__(message or self.__doc__)
