"""Names and reasons from the inbox reach the log escaped: one record, one line."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator

import pytest

from tailord.daemon.text import escape
from tests.conftest import wait_for
from tests.daemon.conftest import Inbox


def test_escape_spells_control_characters_and_keeps_the_rest() -> None:
    assert escape("a\nERROR b\r\t\x1b[2J\x9b\u202e") == "a\\nERROR b\\r\\t\\x1b[2J\\x9b\\u202e"
    assert escape("[/x] ünïcode \\n") == "[/x] ünïcode \\n"


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """The daemon's log as ``tailord serve`` writes it (daemon/cli.py's format)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("tailord")
    root.addHandler(handler)
    level, root.level = root.level, logging.INFO
    yield stream
    root.removeHandler(handler)
    root.level = level


def test_a_file_name_with_a_newline_cannot_forge_a_log_line(
    make_inbox: Callable[..., Inbox], log: io.StringIO
) -> None:
    box = make_inbox("vector")
    box.write("cat/a\nERROR forged.npy", b"not an array")
    box.write("b\x1b[2J\nERROR forged.jsonl", b'{"label": "x\\n", "vector": [1]}\n{}\n')
    box.reason("a\nERROR forged.npy")
    box.reason("b\x1b[2J\nERROR forged.jsonl")
    wait_for(lambda: log.getvalue().count("rejected") >= 2, timeout=10)

    lines = log.getvalue().splitlines()
    # Every line is a record of its own, starting with its time: none was forged.
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:", line) for line in lines), lines
    rejected = [line for line in lines if " WARNING tailord.daemon.inbox.rejected: " in line]
    assert len(rejected) == 2, lines
    assert "rejected cat/a\\nERROR forged.npy: " in rejected[0] + rejected[1]
    assert "rejected lines of b\\x1b[2J\\nERROR forged.jsonl: " in rejected[0] + rejected[1]
    assert "\x1b" not in log.getvalue()
