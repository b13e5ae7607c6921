"""Swap benchmark: 16 clients query /v1/version and /v1/predict without pause across 100 swaps.

Each swap is a real publish (``POST /v1/import-base``: staging, fsync, rename, load and
warm-up, flip, commit, swap, removal of old folders), so version numbers only grow: a client
that ever sees a smaller number than it saw before counts as going backwards. The ceiling is
the same clients for the same time with no swap. Prints the figures, then one JSON line.

    .venv/bin/python bench/swap.py [--clients 16] [--swaps 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tailord.daemon.ctl.client import Client, ClientError
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update

DIM = 8


class Clients:
    """N threads, each on its own connection, asking version then predict in a loop."""

    def __init__(self, socket: Path, n: int) -> None:
        self.socket = socket
        self.n = n
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.backwards = 0
        self.lock = threading.Lock()
        self.ready = threading.Barrier(n + 1)
        self.on_start: Callable[[], None] | None = None

    def run_for(self, until: threading.Event | float) -> float:
        self.stop.clear()
        self.ready = threading.Barrier(self.n + 1)
        threads = [threading.Thread(target=self._client, args=(i,)) for i in range(self.n)]
        for t in threads:
            t.start()
        self.ready.wait()
        started = time.perf_counter()
        if self.on_start is not None:
            self.on_start()
        if isinstance(until, threading.Event):
            until.wait()
        else:
            time.sleep(until)
        self.stop.set()
        for t in threads:
            t.join()
        return time.perf_counter() - started

    def _client(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        latencies: list[float] = []
        errors: list[str] = []
        backwards = 0
        seen = -1
        with Client(self.socket, timeout=30) as client:
            # Connect before the clock starts: the server's listen backlog is small (5), and
            # 16 simultaneous first connects overflow it (EAGAIN) whatever the swaps do.
            while True:
                try:
                    client.version()
                    break
                except ClientError:
                    time.sleep(0.01 * (1 + seed))
            self.ready.wait()
            while not self.stop.is_set():
                for call in ("version", "predict"):
                    t0 = time.perf_counter()
                    try:
                        if call == "version":
                            number = client.version().version
                        else:
                            x = rng.normal(size=(1, DIM)).tolist()
                            number = client.predict(x).version
                    except ClientError as exc:
                        errors.append(f"{call} at {time.perf_counter() - t0:.3f}s: {exc.message}")
                        continue
                    latencies.append(time.perf_counter() - t0)
                    if number < seen:
                        backwards += 1
                    seen = max(seen, number)
        with self.lock:
            self.latencies += latencies
            self.errors += errors
            self.backwards += backwards

    def reset(self) -> None:
        self.latencies, self.errors, self.backwards = [], [], 0


def _model_bytes() -> bytes:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(2, 0.3, (32, DIM)), rng.normal(-2, 0.3, (32, DIM))])
    y = ["cat"] * 32 + ["dog"] * 32
    model = run_update(Model.base(ModelSpec()), x.astype(np.float32), y, x[:0], [], UpdateParams())
    return model.to_bytes()


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


def _start_daemon(root: Path) -> subprocess.Popen[bytes]:
    log = (root / "daemon.log").open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())",
            "serve",
            "--data-dir",
            str(root / "data"),
            "--inbox",
            str(root / "inbox"),
            "--socket",
            str(root / "s.sock"),
            "--quiet-seconds",
            "3600",
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=log,
    )


def _import(sock: Path, weights: bytes, deadline: float) -> None:
    while True:
        try:
            with Client(sock, timeout=30) as client:
                client.request("POST", "/v1/import-base", weights, "application/octet-stream")
            return
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def measure(sock: Path, n_clients: int, swaps: int) -> dict[str, object]:
    weights = _model_bytes()
    _import(sock, weights, time.monotonic() + 60)  # version 1: one that predicts
    clients = Clients(sock, n_clients)
    done = threading.Event()
    swap_seconds: list[float] = []
    swap_errors: list[str] = []

    def swapper() -> None:
        with Client(sock, timeout=60) as client:
            for _ in range(swaps):
                t0 = time.perf_counter()
                try:
                    client.request("POST", "/v1/import-base", weights, "application/octet-stream")
                except ClientError as exc:
                    swap_errors.append(exc.message)
                swap_seconds.append(time.perf_counter() - t0)
        done.set()

    swapping = threading.Thread(target=swapper)
    clients.on_start = swapping.start
    elapsed = clients.run_for(done)
    clients.on_start = None
    swapping.join()
    swap_lat, errors, backwards = clients.latencies, clients.errors + swap_errors, clients.backwards
    with Client(sock) as client:
        final = client.version().version

    clients.reset()
    ceiling_elapsed = clients.run_for(elapsed)
    ceil_lat = clients.latencies
    errors += clients.errors

    p50, p99 = _percentiles(swap_lat)
    c50, c99 = _percentiles(ceil_lat)
    rps, crps = len(swap_lat) / elapsed, len(ceil_lat) / ceiling_elapsed
    publish_ms = statistics.median(swap_seconds) * 1000
    print(
        f"{n_clients} clients, {swaps} swaps (publishes) in {elapsed:.1f}s; final version {final}"
    )
    print(f"  swapping: {len(swap_lat)} requests, {rps:.0f}/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"  ceiling : {len(ceil_lat)} requests, {crps:.0f}/s, p50 {c50:.2f} ms, p99 {c99:.2f} ms")
    print(f"  one publish + swap (import-base round trip): median {publish_ms:.1f} ms")
    print(f"  errors {len(errors)}, clients that saw a version go backwards: {backwards}")
    for message in errors[:5]:
        print(f"  error: {message}")
    return {
        "bench": "swap",
        "errors": len(errors),
        "backwards": backwards,
        "swaps": swaps if final == swaps + 1 else final - 1,
        "clients": n_clients,
        "requests": len(swap_lat),
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "rps": round(rps, 1),
        "ceiling_p50_ms": round(c50, 3),
        "ceiling_p99_ms": round(c99, 3),
        "ceiling_rps": round(crps, 1),
        "p99_ratio": round(p99 / c99, 3),
        "rps_ratio": round(rps / crps, 3),
        "publish_median_ms": round(publish_ms, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--swaps", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tdswap-", dir="/tmp"))
    daemon = _start_daemon(root)
    try:
        result = measure(root / "s.sock", args.clients, args.swaps)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))
    return 0 if result["errors"] == 0 and result["backwards"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
