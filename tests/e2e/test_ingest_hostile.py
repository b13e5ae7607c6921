"""The running daemon refuses hostile inbox entries with a reason, and stays up and ingesting."""

from __future__ import annotations

import io
import json
import os
import sqlite3

import numpy as np
import pytest

from tests.conftest import DaemonProcess, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast


def npy_header(header: str) -> bytes:
    body = header.encode("latin1")
    body += b" " * (64 - (10 + len(body) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def object_npy(value: object) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array(value, dtype=object), allow_pickle=True)
    return buffer.getvalue()


def test_hostile_entries_are_rejected_while_the_daemon_stays_up(daemon: DaemonProcess) -> None:
    config = daemon.root / "tailord.toml"
    config.write_text("[ingest]\nmax_line_bytes = 1000\n")
    daemon.start("--quiet-seconds", "3600", "--config", str(config))
    cat = daemon.inbox / "cat"
    cat.mkdir(parents=True)
    outside = daemon.root / "outside.npy"
    outside_bytes = npy_bytes(np.ones(4, dtype=np.float32))
    outside.write_bytes(outside_bytes)
    linked = daemon.root / "linked.npy"
    linked.write_bytes(outside_bytes)

    os.symlink(outside, cat / "symlink.npy")
    os.link(linked, cat / "hardlink.npy")
    os.mkfifo(cat / "fifo.npy")
    expected = {
        "symlink.npy": "is a symbolic link",
        "hardlink.npy": "has 2 hard links",
        "fifo.npy": "not a regular file",
        "pickled.npy": "not a number type",
        "object.npy": "not a number type",
        "huge.npy": "1000000000000 values, more than the limit",
        "deep.json": "nested too deeply",
        "empty.npy": "the file is empty",
        "words.txt": "text sample but the model takes vector inputs",
        "long.jsonl": "line 2: is over the 1000-byte line cap",
    }
    daemon.drop("cat", "pickled.npy", object_npy([{"evil": 1}]))
    daemon.drop("cat", "object.npy", object_npy([1, "a", None]))
    huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
    daemon.drop("cat", "huge.npy", npy_header(huge))
    daemon.drop("cat", "deep.json", b"[" * 100_000 + b"]" * 100_000)
    (cat / "empty.npy").touch()
    daemon.drop("cat", "words.txt", b"caf\xe9")
    lines = [
        json.dumps({"label": "dog", "vector": [1, 2, 3, 4]}),
        json.dumps({"label": "dog", "vector": list(range(400))}),
        json.dumps({"label": "dog", "vector": [5, 6, 7, 8]}),
    ]
    tmp = daemon.inbox / ".long.jsonl"
    tmp.write_text("\n".join(lines) + "\n")
    os.rename(tmp, daemon.inbox / "long.jsonl")

    rejected = daemon.inbox / ".rejected"
    for name, why in expected.items():
        reason = rejected / f"{name}.reason"
        wait_for(reason.exists, timeout=60)
        text = reason.read_text()
        assert why in text, text
        assert text.count("\n") == 1
    # Nothing outside the inbox was read, moved or changed.
    assert outside.read_bytes() == outside_bytes
    assert linked.read_bytes() == outside_bytes
    assert (rejected / "symlink.npy").is_symlink()

    daemon.drop("cat", "good.npy", npy_bytes(np.full(4, 9.0, dtype=np.float32)))
    with sqlite3.connect(daemon.data_dir / "tailord.db") as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 3)
        sources = {row[0] for row in conn.execute("SELECT source FROM rejections")}
    assert {f"cat/{name}" for name in expected if name != "long.jsonl"} <= sources
    assert "long.jsonl" in sources
    assert daemon.process is not None
    assert daemon.process.poll() is None
    with daemon.client() as client:
        status = client.status()
    assert status.ingest.rejected == len(expected)
    assert status.ingest.error is None
    assert daemon.stop() == 0
