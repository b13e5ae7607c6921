"""One error root: every tailord error is a TailordError whose docstring is its message."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import tailord.daemon
import tailord.storage
import tailord.trainer
from tailord.errors import TailordError
from tailord.storage.errors import CorruptVersion, StorageError
from tailord.trainer.errors import ModelError, TrainerError


def _all_errors() -> list[type[BaseException]]:
    for package in (tailord.daemon, tailord.storage, tailord.trainer):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    found: list[type[BaseException]] = []
    todo: list[type[BaseException]] = [TailordError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_storage_and_trainer_errors_share_the_root() -> None:
    assert issubclass(StorageError, TailordError)
    assert issubclass(TrainerError, TailordError)
    assert not issubclass(StorageError, TrainerError)
    assert not issubclass(TrainerError, StorageError)
    from tailord.daemon.errors import TailordError as reexported

    assert reexported is TailordError


@pytest.mark.parametrize("cls", _all_errors(), ids=lambda cls: cls.__name__)
def test_each_error_is_its_docstring_by_default(cls: type[TailordError]) -> None:
    assert cls.__doc__, f"{cls.__name__} has no docstring to be its message"
    assert str(cls()) == cls.__doc__
    assert str(cls("said otherwise")) == "said otherwise"
    assert ";" in cls.__doc__ or "(" in cls.__doc__, "the message should say what to do"


def test_the_errors_are_found() -> None:
    names = {cls.__name__ for cls in _all_errors()}
    assert {"ConfigError", "NothingQueued", "HistoryError", "LoadFailed"} <= names
    assert CorruptVersion in _all_errors()
    assert ModelError in _all_errors()
