"""The trainer's exceptions: one root, a docstring that is each class's default message."""

from __future__ import annotations


class TrainerError(Exception):
    """The trainer could not finish the request; see the log for the cause."""

    def __init__(self, message: str | None = None) -> None:
        # Raising the bare class still gives a readable message: the docstring.
        super().__init__(message or self.__doc__)


class DecodeError(TrainerError):
    """The input cannot be used as a sample; write it as a 1-D .npy array or a JSON list."""


class ModelError(TrainerError):
    """The model weights or spec cannot be loaded or do not fit; check the spec and the files."""


class UpdateCancelled(TrainerError):
    """The update was cancelled before it finished; the current version is unchanged."""
