"""The daemon killed at each labelled step of publishing, up to the flip: the old version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tailord.storage.crash import STEPS
from tests.conftest import DaemonProcess
from tests.e2e import crash_steps

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast

BEFORE_FLIP = [step for step, version in crash_steps.EXPECTED.items() if version == 0]


@pytest.fixture(scope="module")
def base_data() -> Iterator[Path]:
    yield from crash_steps.base_data()


def test_every_publish_step_is_covered() -> None:
    assert set(crash_steps.EXPECTED) | {"gc-removed"} == set(STEPS)


@pytest.mark.parametrize("step", BEFORE_FLIP)
def test_crash_before_the_flip_keeps_the_old_version(
    daemon: DaemonProcess, base_data: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    crash_steps.crash_at_publish_step(daemon, base_data, monkeypatch, step)
