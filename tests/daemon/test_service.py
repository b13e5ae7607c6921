"""The daemon's lifecycle in-process: whatever start-up began, shutdown stops."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tailord.daemon.config import load_config
from tailord.daemon.errors import ConfigError
from tailord.daemon.service import Daemon
from tests.conftest import wait_for


def test_a_failed_start_stops_the_parts_it_had_started(short_tmp: Path) -> None:
    """The socket's folder is refused (world-writable, no sticky bit) after the database,
    ingestor, watcher and scheduler started: shutdown still stops each, in reverse order."""
    run = short_tmp / "run"
    run.mkdir()
    run.chmod(0o777)
    config = load_config(
        data_dir=short_tmp / "data", inbox=short_tmp / "inbox", socket=run / "s.sock"
    )
    before = set(threading.enumerate())
    daemon = Daemon(config)
    with pytest.raises(ConfigError, match="world-writable"):
        daemon.startup()
    assert set(threading.enumerate()) - before, "the parts had started their threads"
    daemon.shutdown()
    wait_for(lambda: set(threading.enumerate()) <= before, timeout=10)
    assert not (run / "s.sock").exists()
