"""A ``.jsonl`` file of refused lines is read in bounded memory, whatever its size."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.daemon.conftest import Inbox

# Peak RSS growth allowed while the ingestor reads 1,500,000 refused lines. Holding each line
# and its reason (~230 B a line) grew it by ~350 MB; streaming them to .rejected/ and keeping
# five reasons leaves the read buffers, SQLite's page cache and the allocator's slack.
LINES = 1_500_000
BOUND_BYTES = 16 * 2**20  # measured: 1.1 MB (366 MB before)

# Run in a fresh process, so that its peak RSS is the ingestor's alone.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from tailord.daemon.config import IngestConfig
    from tailord.daemon.inbox.ingest import Ingestor
    from tailord.daemon.inbox.watcher import PendingPaths
    from tailord.storage.db import open_database

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    root = Path(sys.argv[1])
    inbox = root / "inbox"
    db = open_database(root / "tailord.db")
    ingestor = Ingestor(inbox, db, IngestConfig(), None, PendingPaths(), lambda n: None)
    # Warm up: every module imported and every code path run once, before the measure.
    warm = inbox / "warm.jsonl"
    warm.write_bytes(b'{"label": "a", "vector": [1, 2]}\\n{}\\n')
    ingestor.process([warm])
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS, from here on
    before = status("VmRSS")
    added = ingestor.process([inbox / "big.jsonl"])
    peak = status("VmHWM")
    ingestor.stop()
    db.close()
    print(json.dumps({"growth": peak - before, "added": added}))
    """
)


@pytest.mark.slow  # ~1.5 million lines decoded and refused
def test_refused_lines_are_counted_and_streamed_in_bounded_memory(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "big.jsonl").write_bytes(b'{"label": "a", "vector": [3, 4]}\n' + b"{}\n" * LINES)

    finished = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert finished.returncode == 0, finished.stderr
    measured = json.loads(finished.stdout.splitlines()[-1])
    assert measured["added"] == 1
    assert measured["growth"] < BOUND_BYTES, f"peak RSS grew by {measured['growth']} bytes"
    rejected = inbox / ".rejected"
    reason = (rejected / "big.jsonl.reason").read_text()
    assert reason.startswith(f"big.jsonl: {LINES} of {LINES + 1} lines refused")
    assert f"(and {LINES - 5} more)" in reason
    assert all(f"line {n}: " in reason for n in range(2, 7))
    assert "line 7: " not in reason  # five listed, the others counted
    with (rejected / "big.jsonl").open("rb") as kept:
        assert sum(1 for _ in kept) == LINES  # every refused line, to fix and drop again
    assert not (inbox / "big.jsonl").exists()
    assert sorted(p.name for p in rejected.iterdir()) == [
        "big.jsonl",
        "big.jsonl.reason",
        "warm.jsonl",
        "warm.jsonl.reason",
    ]  # no temporary file left behind
    assert json.loads((rejected / "warm.jsonl").read_text()) == {}


def test_refused_lines_of_a_file_read_again_later_are_not_kept_twice(
    make_inbox: Callable[..., Inbox],
) -> None:
    # The queue's cap stops the file half-way: it stays in the inbox to be read again, so
    # the refused lines streamed so far are dropped, not published (they come back then).
    box = make_inbox("vector", max_queued_samples=1, batch_seconds=0.05)
    good = [f'{{"label": "a", "vector": [{i}, 1]}}'.encode() for i in range(4)]
    lines = [b"{}", good[0], good[1], b"[]", good[2], good[3]]
    box.write("capped.jsonl", b"\n".join(lines) + b"\n")
    wait_for(lambda: box.ingestor.stats.backpressure, timeout=20)
    assert (box.inbox / "capped.jsonl").exists()
    assert box.count() < len(good)
    assert not box.rejected.exists() or list(box.rejected.iterdir()) == []
