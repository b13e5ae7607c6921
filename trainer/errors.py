"""The trainer's exceptions: they derive from tailord's one root, ``tailord.errors``.

Each class's docstring is its default message.
"""

from __future__ import annotations

from tailord.errors import TailordError


class TrainerError(TailordError):
    """The trainer could not finish the request; see the log for the cause."""


class DecodeError(TrainerError):
    """The input cannot be used as a sample; write it as a 1-D .npy array or a JSON list."""


class ModelError(TrainerError):
    """The model weights or spec cannot be loaded or do not fit; check the spec and the files."""


class UpdateCancelled(TrainerError):
    """The update was cancelled before it finished; the current version is unchanged, and the
    next update (`tailorctl update`) resumes from its last checkpoint."""


def one_line(exc: BaseException) -> str:
    """A library's exception text for a DecodeError's reason: one line, at most 200 characters."""
    return " ".join(str(exc).split())[:200]
