"""Socket memory benchmark: what hostile clients make the daemon hold, against its own idle RSS.

Two attacks on a real ``tailord serve`` with default limits: one client pipelining
``GET /v1/version`` without reading the answers (for ``--seconds``), then 40 clients each
holding a 16 MiB body one byte short. The ceiling is the daemon's RSS at rest in the same
run; the figures are its growth under each attack and the ratio to that idle RSS. Prints
the figures, then one JSON line.

    .venv/bin/python bench/socket_memory.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = 16 * 1024 * 1024 - 1  # under the default [api] max_body_bytes


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _start(root: Path) -> subprocess.Popen[bytes]:
    sock = root / "s.sock"
    argv = [
        sys.executable,
        "-c",
        "import sys; from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())",
        "serve",
        *("--data-dir", str(root / "data"), "--inbox", str(root / "inbox")),
        *("--socket", str(sock)),
    ]
    log = (root / "daemon.log").open("ab")
    daemon = subprocess.Popen(argv, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(sock))
                probe.sendall(b"GET /v1/version HTTP/1.1\r\nConnection: close\r\n\r\n")
                if probe.recv(12).startswith(b"HTTP/1.1 200"):
                    return daemon
        except OSError:
            pass
        time.sleep(0.2)
    daemon.kill()
    raise RuntimeError("the daemon did not start")


def pipelining(sock_path: Path, seconds: float) -> int:
    """Requests written in ``seconds`` by a client that reads nothing; bytes sent."""
    request = b"GET /v1/version HTTP/1.1\r\n\r\n" * 4096
    sent = 0
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(sock_path))
        sock.settimeout(0.5)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                sent += sock.send(request)
            except TimeoutError:
                continue
        return sent


def held_bodies(sock_path: Path, clients: int) -> tuple[list[socket.socket], dict[int, int]]:
    """``clients`` connections each sending a body one byte short; their answers so far."""
    held, statuses = [], {}
    chunk = b"x" * (1 << 20)
    for _ in range(clients):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(sock_path))
        sock.settimeout(5)
        held.append(sock)
        try:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % BODY)
            left = BODY - 1
            while left > 0:
                left -= sock.send(chunk[: min(left, len(chunk))])
        except OSError:
            pass  # refused and closed at once: the budget was spent
    time.sleep(1.0)
    for sock in held:
        sock.settimeout(0.05)
        try:
            head = sock.recv(64)
        except (TimeoutError, OSError):
            continue
        if head.startswith(b"HTTP/1.1 "):
            status = int(head.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
    return held, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=40)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tdsock-", dir="/tmp"))
    daemon = _start(root)
    try:
        time.sleep(1.0)
        idle = _rss_mib(daemon.pid)
        sent = pipelining(root / "s.sock", args.seconds)
        time.sleep(0.5)
        piped = _rss_mib(daemon.pid) - idle
        held, statuses = held_bodies(root / "s.sock", args.clients)
        bodies = _rss_mib(daemon.pid) - idle
        for sock in held:
            sock.close()
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    print(f"idle RSS (ceiling): {idle:.1f} MiB")
    print(
        f"pipelining without reading for {args.seconds:g} s: {sent / 2**20:.2f} MiB sent, "
        f"RSS +{piped:.1f} MiB ({piped / idle:.2f} x idle)"
    )
    print(
        f"{args.clients} bodies held one byte short of 16 MiB: RSS +{bodies:.1f} MiB "
        f"({bodies / idle:.2f} x idle); answers {statuses}"
    )
    result = {
        "bench": "socket_memory",
        "idle_rss_mib": round(idle, 1),
        "pipelined_sent_mib": round(sent / 2**20, 2),
        "pipelined_growth_mib": round(piped, 1),
        "pipelined_ratio": round(piped / idle, 3),
        "held_bodies": args.clients,
        "held_growth_mib": round(bodies, 1),
        "held_ratio": round(bodies / idle, 3),
        "held_answers": {str(k): v for k, v in sorted(statuses.items())},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
