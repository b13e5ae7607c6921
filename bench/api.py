"""Socket API throughput and latency: ``GET /v1/version`` on a real ``tailord serve``.

Beside it, in the same run and with the same client, a minimal asyncio HTTP responder on a
Unix socket (parse the request head, answer a fixed JSON body, keep-alive): the ceiling of
what Python can answer here. The two alternate, three rounds each, and each side's median
round is reported, so that both see the same background noise. Goal: tailord >= 0.5x its
requests/s. Then p99 with one client while an update trains, beside p99 idle. Goal: <= 2x.

Run: .venv/bin/python bench/api.py [--seconds 3]
Last line: {"bench": "api", "value": ..., "ceiling": ..., "ratio": ..., "p99_train_over_idle": ...}
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROUNDS = 3  # per client count and side
REQUEST = b"GET /v1/version HTTP/1.1\r\nHost: localhost\r\n\r\n"

CEILING = r"""
import asyncio, sys
BODY = b'{"version": 0, "parent": null, "labels": [], "sample_count": 0}\n'
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BODY))
async def serve(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(HEAD + BODY)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_unix_server(serve, sys.argv[1])
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(path))
    return sock


def _get(sock: socket.socket, buffer: bytearray) -> None:
    """One keep-alive request; reads exactly one response (headers + Content-Length)."""
    sock.sendall(REQUEST)
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buffer[:end]).lower()
            start = head.index(b"content-length:") + 15
            length = int(
                head[start : head.index(b"\r\n", start) if b"\r\n" in head[start:] else None]
            )
            total = end + 4 + length
            if len(buffer) >= total:
                del buffer[:total]
                return
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer.extend(chunk)


def load(
    path: Path, clients: int, seconds: float, stop: threading.Event | None = None
) -> dict[str, float]:
    """``clients`` threads, each on its own keep-alive connection, for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    start_gate = threading.Barrier(clients + 1, timeout=60)

    def client(index: int) -> None:
        sock = _connect(path)
        buffer = bytearray()
        _get(sock, buffer)  # warm the connection
        start_gate.wait()
        own = latencies[index]
        deadline = time.perf_counter() + seconds
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= deadline or (stop is not None and stop.is_set()):
                    break
                _get(sock, buffer)
                own.append(time.perf_counter() - t0)
        finally:
            sock.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    every = np.concatenate([np.asarray(x) for x in latencies])
    return {
        "rps": len(every) / elapsed,
        "p50_us": float(np.percentile(every, 50) * 1e6),
        "p99_us": float(np.percentile(every, 99) * 1e6),
        "n": float(len(every)),
    }


def _npy(vector: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vector, allow_pickle=False)
    return buffer.getvalue()


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise SystemExit("bench: timed out waiting for the daemon")


SERVE = "import sys; from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())"


def start_daemon(root: Path) -> tuple[subprocess.Popen[bytes], Path]:
    config = root / "tailord.toml"
    # Enough epochs that the update trains for the whole "while training" measurement.
    config.write_text('[model]\nhead = "linear"\n[update]\nepochs = 400\nbatch_size = 16\n')
    sock = root / "run" / "s.sock"
    log = (root / "daemon.log").open("wb")
    args = [
        *(sys.executable, "-c", SERVE, "serve", "--config", str(config)),
        *("--data-dir", str(root / "data"), "--inbox", str(root / "inbox")),
        *("--socket", str(sock), "--quiet-seconds", "3600", "--log-level", "WARNING"),
    ]
    return subprocess.Popen(args, stdout=log, stderr=log), sock


def drop_samples(inbox: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        label = "ab"[i % 2]
        folder = inbox / label
        folder.mkdir(parents=True, exist_ok=True)
        center = 1.0 if label == "a" else -1.0
        vector = (center + rng.normal(0, 1, 32)).astype(np.float32)
        (folder / f"{i}.npy").write_bytes(_npy(vector))


def during_update(sock: Path, seconds: float) -> tuple[dict[str, float], bool]:
    """p99 with one client while an update trains; whether it trained throughout."""
    from tailord.daemon.ctl.client import Client

    with Client(sock) as client:
        update = client.update()
        _wait(lambda: client.update_info(update.id).state == "running", 30)
    time.sleep(0.5)  # past the worker's start (imports), into the training loop
    finished = threading.Event()
    measured = threading.Event()

    def watch() -> None:
        with Client(sock) as watcher:
            while not measured.is_set():
                if watcher.update_info(update["id"])["state"] != "running":
                    finished.set()
                    return
                time.sleep(0.2)

    watching = threading.Thread(target=watch)
    watching.start()
    training = load(sock, 1, seconds, stop=finished)
    measured.set()
    watching.join()
    return training, not finished.is_set()


def measure(root: Path, seconds: float, samples: int) -> dict[str, dict[str, float]]:
    from tailord.daemon.ctl.client import Client

    procs: list[subprocess.Popen[bytes]] = []
    try:
        ceiling_sock = root / "ceiling.sock"
        ceiling = subprocess.Popen(
            [sys.executable, "-c", CEILING, str(ceiling_sock)], stdout=subprocess.PIPE
        )
        procs.append(ceiling)
        assert ceiling.stdout is not None
        assert ceiling.stdout.readline().strip() == b"ready"
        daemon, sock = start_daemon(root)
        procs.append(daemon)
        _wait(sock.exists, 60)
        results: dict[str, dict[str, float]] = {}
        for clients in (1, 16):
            # Alternating rounds, the median of each side: the two see the same noise.
            rounds: dict[str, list[dict[str, float]]] = {"ceiling": [], "tailord": []}
            for _ in range(ROUNDS):
                rounds["ceiling"].append(load(ceiling_sock, clients, seconds))
                rounds["tailord"].append(load(sock, clients, seconds))
            for side, runs in rounds.items():
                results[f"{side}_{clients}"] = sorted(runs, key=lambda r: r["rps"])[ROUNDS // 2]
        drop_samples(root / "inbox", samples)
        with Client(sock) as client:
            _wait(lambda: client.status().queued == samples, 120)
        results["idle"] = load(sock, 1, seconds)  # idle again, after the ingest burst
        results["training"], throughout = during_update(sock, seconds)
        results["training"]["throughout"] = float(throughout)
        return results
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description="Socket API requests/s and latency.")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--samples", type=int, default=2000, help="for the training update")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tdb-", dir="/tmp"))
    try:
        results = measure(root, args.seconds, args.samples)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    for name, r in results.items():
        print(
            f"{name:12s} {r['rps']:9.0f} req/s  "
            f"p50 {r['p50_us']:7.0f} us  p99 {r['p99_us']:7.0f} us  ({r['n']:.0f} requests)"
        )
    if not results["training"]["throughout"]:
        print("(the update ended before the training measurement did)")
    value = results["tailord_16"]["rps"]
    ceiling = results["ceiling_16"]["rps"]
    summary = {
        "bench": "api",
        "value": round(value),
        "ceiling": round(ceiling),
        "ratio": round(value / ceiling, 3),
        "ratio_1_client": round(results["tailord_1"]["rps"] / results["ceiling_1"]["rps"], 3),
        "p50_us_1": round(results["tailord_1"]["p50_us"]),
        "p99_us_1": round(results["tailord_1"]["p99_us"]),
        "p50_us_16": round(results["tailord_16"]["p50_us"]),
        "p99_us_16": round(results["tailord_16"]["p99_us"]),
        "p99_us_idle": round(results["idle"]["p99_us"]),
        "p99_us_training": round(results["training"]["p99_us"]),
        "p99_train_over_idle": round(results["training"]["p99_us"] / results["idle"]["p99_us"], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
