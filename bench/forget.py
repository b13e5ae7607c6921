"""How long forgetting takes, beside its ceiling: one full retrain from base, same daemon.

A real ``tailord serve`` (``--head H``, default linear) learns N vectors of DIM values from
one ``.jsonl`` batch. Then, measured by the client's wall clock on the same data:

- ``retrain_s``: ``POST /v1/update {"from": "base"}?wait=true``, the ceiling: one full
  retrain on every learned sample;
- ``forget_s``: ``POST /v1/forget`` of a tenth of the samples by sha256: the rows, the
  versions that learned them, a rebuild from base on the rest, the database compacted.

The issue's bound is ``forget_s / retrain_s`` <= 1 plus the compaction (a VACUUM of the
database); the forget retrains on fewer samples than the ceiling does.

Run: .venv/bin/python bench/forget.py [--samples 5000] [--dim 64] [--head linear]
Last line: {"bench": "forget", "forget_s": ..., "retrain_s": ..., "ratio": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tailord.daemon.api import bodies
from tailord.daemon.ctl.client import Client, ClientError

SERVE = "import sys; from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())"


def wait(predicate: object, daemon: subprocess.Popen[bytes], root: Path) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + 600
    while True:
        try:
            if predicate():
                return
        except (ClientError, OSError):
            pass
        if time.monotonic() > deadline or daemon.poll() is not None:
            sys.exit((root / "daemon.log").read_text()[-3000:])
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--head", default="linear")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="td-fg-", dir="/tmp"))
    sock = root / "s.sock"
    log = (root / "daemon.log").open("wb")
    argv = [sys.executable, "-c", SERVE, "serve", "--data-dir", str(root / "data"),
            "--inbox", str(root / "inbox"), "--socket", str(sock), "--head", args.head,
            "--quiet-seconds", "0.5"]  # fmt: skip
    daemon = subprocess.Popen(argv, stdout=log, stderr=log)
    client = Client(sock, timeout=600)
    try:
        wait(lambda: client.version() is not None, daemon, root)
        rng = np.random.default_rng(0)
        lines = []
        for i in range(args.samples):
            label = f"l{i % 10}"
            vector = rng.normal(i % 10, 1.0, args.dim).astype(np.float32)
            lines.append(json.dumps({"label": label, "vector": vector.tolist()}) + "\n")
        (root / "inbox").mkdir(parents=True, exist_ok=True)
        (root / "batch.tmp").write_text("".join(lines))
        os.rename(root / "batch.tmp", root / "inbox" / "batch.jsonl")

        def learned() -> bool:
            return sum(client.status().samples.get("learned", {}).values()) == args.samples

        wait(learned, daemon, root)
        started = time.monotonic()
        done = client.update(bodies.UpdateRequest(from_="base"), wait=True, timeout=600)
        retrain_s = time.monotonic() - started
        assert done.state == "succeeded", done
        with sqlite3.connect(root / "data" / "tailord.db") as conn:
            doomed = [r[0] for r in conn.execute("SELECT sha256 FROM samples WHERE id % 10 = 3")]
        size_before = (root / "data" / "tailord.db").stat().st_size
        started = time.monotonic()
        forgot = client.forget(bodies.ForgetRequest(sha256=doomed))
        forget_s = time.monotonic() - started
    finally:
        client.close()
        daemon.terminate()
        daemon.wait(30)
    ratio = forget_s / retrain_s
    print(
        f"retrain from base on {args.samples} samples: {retrain_s:.2f}s (the ceiling); forget "
        f"{len(forgot.samples)} of them: {forget_s:.2f}s (daemon: {forgot.seconds:.2f}s), "
        f"{ratio:.2f}x the ceiling; database {size_before / 1e6:.1f} MB before"
    )
    shutil.rmtree(root, ignore_errors=True)
    result = {
        "bench": "forget",
        "forget_s": round(forget_s, 3),
        "retrain_s": round(retrain_s, 3),
        "ratio": round(ratio, 3),
        "samples": args.samples,
        "forgotten": len(forgot.samples),
        "head": args.head,
        "dim": args.dim,
        "load": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
