"""``INBOX/.rejected/`` against the inbox's writers: escaped reasons, no symlink followed."""

from __future__ import annotations

import os
from collections.abc import Callable

from tests.conftest import wait_for
from tests.daemon.conftest import Inbox


def test_reason_files_hold_no_control_characters(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector")
    name = "bad\x1b[2J\x07.json"
    box.write(f"cat/{name}", b"[1, ")
    text = box.reason(name)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\\x1b[2J\\x07" in text  # the name still readable, its escapes spelled out

    lines = "bad\x1b]0;title\x07.jsonl"
    box.write(lines, b'{"label": "cat", "input": [1, 2]}\n{"label": "cat"}\n')
    text = box.reason(lines)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\\x1b]0;title\\x07" in text


def test_a_symlinked_rejected_folder_is_replaced_not_followed(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector")
    elsewhere = box.root / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, box.rejected)
    box.write("cat/bad.json", b"[1, ")
    box.reason("bad.json")  # in the inbox's own .rejected/
    assert not box.rejected.is_symlink()
    assert box.rejected.is_dir()
    assert list(elsewhere.iterdir()) == []

    for entry in box.rejected.iterdir():
        entry.unlink()
    box.rejected.rmdir()
    os.symlink(elsewhere, box.rejected)  # again, now for a .jsonl file's refused lines
    box.write("some.jsonl", b'{"label": "cat", "input": [1, 2]}\n{"label": "cat"}\n')
    box.reason("some.jsonl")
    wait_for((box.rejected / "some.jsonl").exists, timeout=10)
    assert not box.rejected.is_symlink()
    assert list(elsewhere.iterdir()) == []
