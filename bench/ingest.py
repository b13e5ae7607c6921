"""Ingest throughput: a 100,000-line .jsonl of 384-float vectors through the real Ingestor.

Beside it, in the same run, the ceiling: the very same rows (read back from the ingested
database) inserted with raw ``sqlite3`` ``executemany`` into a fresh file with the same
schema, the same pragmas (WAL, synchronous=FULL) and the same transaction size. The ratio is
how close ingest gets to SQLite's own speed (goal: 0.5 or more).

Usage: .venv/bin/python bench/ingest.py [--lines 100000] [--dim 384]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

from tailord.daemon.config import IngestConfig
from tailord.daemon.inbox.ingest import Ingestor
from tailord.daemon.inbox.watcher import PendingPaths
from tailord.storage.db import open_database

TEMPLATES = 1000
COLUMNS = "sha256, label, kind, payload, source, size, state, created_at"


def write_jsonl(path: Path, lines: int, dim: int) -> int:
    """Distinct vectors: one of TEMPLATES random prefixes, then the line number."""
    rng = np.random.default_rng(0)
    prefixes = [", ".join(f"{x:.5f}" for x in rng.normal(0, 1, dim - 1)) for _ in range(TEMPLATES)]
    labels = [f"label{i}" for i in range(10)]
    with path.open("w") as out:
        for i in range(lines):
            out.write(
                f'{{"label": "{labels[i % 10]}", "vector": [{prefixes[i % TEMPLATES]}, {i}]}}\n'
            )
    return path.stat().st_size


def ingest(root: Path, source: Path, batch: int, run: int) -> tuple[float, Path]:
    inbox = root / f"inbox{run}"
    inbox.mkdir()
    jsonl = inbox / "bench.jsonl"
    shutil.copyfile(source, jsonl)
    db = open_database(root / f"ingest{run}.db")
    options = msgspec.structs.replace(IngestConfig(), batch_lines=batch, max_queued_samples=10**9)
    ingestor = Ingestor(inbox, db, options, None, PendingPaths(), lambda n: None)
    started = time.perf_counter()
    added = ingestor.process([jsonl])  # the ingest thread's own code path, minus the wait
    elapsed = time.perf_counter() - started
    ingestor.stop()
    db.close()
    if jsonl.exists() or ingestor.stats.last_error:
        raise SystemExit(f"ingest did not finish: {ingestor.stats}")
    print(f"ingest: {added} samples in {elapsed:.2f}s")
    return elapsed, root / f"ingest{run}.db"


def ceiling(root: Path, source: Path, batch: int, run: int) -> tuple[float, int]:
    with sqlite3.connect(source) as conn:
        rows = conn.execute(f"SELECT {COLUMNS} FROM samples ORDER BY id").fetchall()
    raw = root / f"raw{run}.db"
    open_database(raw).close()  # the same schema, made the same way
    conn = sqlite3.connect(raw, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    marks = ", ".join("?" * len(COLUMNS.split(",")))
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO samples ({COLUMNS}) VALUES ({marks})",
            rows[start : start + batch],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    print(f"raw executemany: {len(rows)} rows in {elapsed:.2f}s")
    return elapsed, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=IngestConfig().batch_lines)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="td-bench-"))
    try:
        source = root / "bench.jsonl"
        size = write_jsonl(source, args.lines, args.dim)
        print(f"{args.lines} lines of {args.dim} floats: {size / 1e6:.0f} MB of JSONL")
        # Alternated and best of each: the machine is shared, and load that comes and goes
        # should not land on one side of the ratio only.
        took, raw_took = [], []
        for run in range(args.repeat):
            seconds, db = ingest(root, source, args.batch, run)
            took.append(seconds)
            seconds, rows = ceiling(root, db, args.batch, run)
            raw_took.append(seconds)
            if rows != args.lines:
                raise SystemExit(f"ingested {rows} samples, expected {args.lines}")
        value, top = args.lines / min(took), rows / min(raw_took)
        print(f"ingest {value:,.0f} samples/s; raw executemany {top:,.0f} rows/s")
        figures = {
            "bench": "ingest",
            "value": round(value, 1),
            "ceiling": round(top, 1),
            "ratio": round(value / top, 3),
        }
        print(json.dumps(figures))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
