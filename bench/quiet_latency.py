"""How soon after the quiet period an update starts, and how soon a renamed-in file is committed.

A real ``tailord serve`` (default k-NN head over vectors, ``--quiet-seconds Q``, the periodic
rescan an hour away so only events can find a file). Each drop writes one ``.npy`` into a
sibling folder of the inbox on the same filesystem and renames it into ``INBOX/<label>/``,
then waits until the update that learns it has finished (``--write direct``: writes it in
place instead). Per drop, read from the daemon's
own records:

- ``commit_s``: the rename → the sample's commit (``ingest.last_commit_at`` in status);
- ``start_delay_ms``: the quiet period's end (that commit + Q) → the update's row
  (``started_at``): what stands between the policy's deadline and the update starting.

Run: .venv/bin/python bench/quiet_latency.py [--drops 10] [--quiet 1.0]
Last line: {"bench": "quiet_latency", "start_delay_ms": <median>, "commit_s": <median>, ...}
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tailord.daemon.ctl.client import Client, ClientError

SERVE = "import sys; from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())"


def finished(root: Path, n: int) -> float | None:
    """The ``started_at`` of the ``n``-th update once it has finished, else None."""
    with sqlite3.connect(root / "data" / "tailord.db", timeout=30) as conn:
        row = conn.execute(
            "SELECT started_at FROM updates WHERE finished_at IS NOT NULL ORDER BY id"
            " LIMIT 1 OFFSET ?",
            (n - 1,),
        ).fetchone()
    return None if row is None else float(row[0])


def wait_ready(client: Client, daemon: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            client.version()
            return
        except (ClientError, OSError):
            if time.monotonic() > deadline or daemon.poll() is not None:
                sys.exit((root / "daemon.log").read_text())
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drops", type=int, default=10)
    parser.add_argument("--quiet", type=float, default=1.0)
    parser.add_argument("--write", choices=["rename", "direct"], default="rename")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="td-ql-", dir="/tmp"))
    (root / "tailord.toml").write_text("[ingest]\nrescan_seconds = 3600\n")
    sock = root / "s.sock"
    log = (root / "daemon.log").open("wb")
    argv = [sys.executable, "-c", SERVE, "serve", "--data-dir", str(root / "data"),
            "--inbox", str(root / "inbox"), "--socket", str(sock), "--config",
            str(root / "tailord.toml"), "--quiet-seconds", str(args.quiet)]  # fmt: skip
    daemon = subprocess.Popen(argv, stdout=log, stderr=log)
    client = Client(sock, timeout=30)
    try:
        wait_ready(client, daemon, root)
        staging = root / "staging"
        staging.mkdir()
        (root / "inbox" / "a").mkdir(parents=True, exist_ok=True)
        delays, commits = [], []
        for i in range(args.drops):
            buf = io.BytesIO()
            np.save(buf, np.array([float(i), 1.0, 0.5, -1.0], dtype=np.float32))
            target = root / "inbox" / "a" / f"{i}.npy"
            if args.write == "rename":
                (staging / f"{i}.npy").write_bytes(buf.getvalue())
                renamed = time.time()
                os.rename(staging / f"{i}.npy", target)
            else:
                renamed = time.time()
                target.write_bytes(buf.getvalue())
            while (started := finished(root, i + 1)) is None:
                time.sleep(0.05)
            committed = client.status().ingest.last_commit_at
            assert committed is not None
            delay = started - (committed + args.quiet)
            delays.append(delay * 1000)
            commits.append(committed - renamed)
            print(
                f"drop {i}: committed {committed - renamed:.3f}s after the rename; update "
                f"started {delay * 1000:.1f} ms after the quiet period's end",
                flush=True,
            )
    finally:
        client.close()
        daemon.terminate()
        daemon.wait(30)
    result = {
        "bench": "quiet_latency",
        "start_delay_ms": round(statistics.median(delays), 1),
        "start_delay_max_ms": round(max(delays), 1),
        "commit_s": round(statistics.median(commits), 3),
        "commit_max_s": round(max(commits), 3),
        "drops": args.drops,
        "write": args.write,
        "quiet_seconds": args.quiet,
        "load": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
