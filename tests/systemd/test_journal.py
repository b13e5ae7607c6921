"""Logs for the journal under ``$JOURNAL_STREAM``; the terminal's format elsewhere."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import pytest

from tailord.daemon.logs import JournalFormatter, journal_stream, priority
from tests.conftest import DaemonProcess


def _stream_id(path: Path) -> str:
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}"


def test_under_journald_lines_carry_priorities_and_no_time(
    daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon.log.touch()
    monkeypatch.setenv("JOURNAL_STREAM", _stream_id(daemon.log))  # stderr is that file
    daemon.start()
    daemon.stop()
    lines = daemon.log.read_text().splitlines()
    assert "<6>tailord.daemon.service: shutting down" in lines
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert not any(re.search(r"\d\d:\d\d:\d\d", line) for line in lines), lines


def test_a_journal_stream_that_is_not_stderr_keeps_the_terminal_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inherited from a service, while stderr was redirected elsewhere: the terminal's format."""
    other = tmp_path / "other"
    other.touch()
    with (tmp_path / "stderr").open("w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", _stream_id(other))
        assert not journal_stream(stream)
        monkeypatch.setenv("JOURNAL_STREAM", _stream_id(tmp_path / "stderr"))
        assert journal_stream(stream)


def test_priorities_follow_sd_daemon_and_tracebacks_keep_theirs(tmp_path: Path) -> None:
    assert [priority(level) for level in (50, 40, 30, 20, 10, 5)] == [2, 3, 4, 6, 7, 7]
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    text = JournalFormatter().format(record)
    assert text.startswith("<3>x: failed\n<3>Traceback")
    assert all(line.startswith("<3>") for line in text.splitlines())
    with (tmp_path / "f").open("w") as stream:
        assert not journal_stream(stream, {"JOURNAL_STREAM": "garbage"})
        assert journal_stream(stream, {"JOURNAL_STREAM": _stream_id(tmp_path / "f")})
