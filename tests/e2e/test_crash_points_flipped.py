"""The daemon killed at each labelled step after the flip: the new version, fully recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess
from tests.e2e import crash_steps

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast

AFTER_FLIP = [step for step, version in crash_steps.EXPECTED.items() if version == 1]


@pytest.fixture(scope="module")
def base_data() -> Iterator[Path]:
    yield from crash_steps.base_data()


@pytest.mark.parametrize("step", AFTER_FLIP)
def test_crash_after_the_flip_keeps_the_new_version(
    daemon: DaemonProcess, base_data: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    crash_steps.crash_at_publish_step(daemon, base_data, monkeypatch, step)


def test_crash_while_removing_an_old_version(
    daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_steps.crash_while_removing_an_old_version(daemon, monkeypatch)
