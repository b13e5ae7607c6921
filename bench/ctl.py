"""How fast ``tailorctl`` starts: ``--help``, and ``version`` against a real ``tailord serve``.

Each run is a fresh process, as when a person types the command or a script calls it in a
loop; its wall time is measured around the spawn and its peak memory (max RSS) comes from
``os.wait4``. Beside it, in the same run and alternated with it, the ceiling: the bare
interpreter (``python -c pass``), which no Python command can beat. The median of ``--runs``
runs of each counts. Goal (issue 11): <= 0.15 s wall and <= 40 MB for both commands; the
ratio to the ceiling says how much of that is tailorctl's own.

Run: .venv/bin/python bench/ctl.py [--runs 21]
Last line: {"bench": "ctl", "help_s": ..., "version_s": ..., "ceiling_s": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVE = "import sys; from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())"
GOAL_SECONDS = 0.15
GOAL_MB = 40.0
TIME = "/usr/bin/time"  # GNU time: apt-get install time


def tailorctl() -> list[str]:
    """The installed console script, as a user runs it (its wrapper included)."""
    script = Path(sys.executable).parent / "tailorctl"
    found = str(script) if script.exists() else shutil.which("tailorctl")
    if found is None:
        sys.exit("tailorctl is not installed; run scripts/setup.sh")
    return [found]


def start_daemon(root: Path) -> tuple[subprocess.Popen[bytes], Path]:
    sock = root / "s.sock"
    args = [sys.executable, "-c", SERVE, "serve", "--data-dir", str(root / "data"),
            "--inbox", str(root / "inbox"), "--socket", str(sock)]  # fmt: skip
    log = (root / "daemon.log").open("wb")
    daemon = subprocess.Popen(args, stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"tailord exited early:\n{(root / 'daemon.log').read_text()}")
        probe = subprocess.run([*tailorctl(), "--socket", str(sock), "version"],
                               capture_output=True, check=False)  # fmt: skip
        if probe.returncode == 0:
            return daemon, sock
        time.sleep(0.2)
    sys.exit("tailord did not answer within 120 s")


def once(argv: list[str], env: dict[str, str], report: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and max RSS (MB) of one run of ``argv``.

    Memory and CPU come from GNU time, which forks the command from its own small process:
    a child spawned from this interpreter would count the interpreter's pages it shared
    before its exec in its max RSS (the bench's own 14 MB).
    """
    started = time.perf_counter()
    done = subprocess.run(
        [TIME, "-o", str(report), "-f", "%M %U %S", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {done.stderr.decode()}")
    kilobytes, user, system = report.read_text().split()[-3:]
    return seconds, float(user) + float(system), int(kilobytes) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs of each command")
    args = parser.parse_args()

    if not Path(TIME).exists():
        sys.exit(f"{TIME} (GNU time) is needed to measure max RSS; apt-get install time")
    root = Path(tempfile.mkdtemp(prefix="td-ctl-", dir="/tmp"))
    daemon, sock = start_daemon(root)
    load = os.getloadavg()[0]
    try:
        env = {**os.environ, "TAILORD_SOCKET": str(sock)}
        commands = {
            "ceiling": [sys.executable, "-c", "pass"],
            "help": [*tailorctl(), "--help"],
            "version": [*tailorctl(), "version"],
        }
        report = root / "time.txt"
        for argv in commands.values():  # warm the page cache and the bytecode caches
            once(argv, env, report)
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):  # alternated, so that each sees the same background load
            for name, argv in commands.items():
                runs[name].append(once(argv, env, report))
        load = max(load, os.getloadavg()[0])
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)

    wall = {name: statistics.median(r[0] for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r[1] for r in rs) for name, rs in runs.items()}
    rss = {name: statistics.median(r[2] for r in rs) for name, rs in runs.items()}
    for name in commands:
        print(
            f"{name:8s} {wall[name] * 1000:6.1f} ms wall  {cpu[name] * 1000:6.1f} ms CPU  "
            f"{rss[name]:5.1f} MB max RSS  ({wall[name] / wall['ceiling']:.2f}x the ceiling)"
        )
    print(
        f"medians of {args.runs} runs each; load average up to {load:.2f} on {os.cpu_count()} CPUs"
    )
    met = all(wall[n] <= GOAL_SECONDS and rss[n] <= GOAL_MB for n in ("help", "version"))
    summary = {
        "bench": "ctl",
        "help_s": round(wall["help"], 4),
        "version_s": round(wall["version"], 4),
        "ceiling_s": round(wall["ceiling"], 4),
        "ratio_help": round(wall["help"] / wall["ceiling"], 2),
        "ratio_version": round(wall["version"] / wall["ceiling"], 2),
        "help_cpu_s": round(cpu["help"], 3),
        "version_cpu_s": round(cpu["version"], 3),
        "ceiling_cpu_s": round(cpu["ceiling"], 3),
        "help_mb": round(rss["help"], 1),
        "version_mb": round(rss["version"], 1),
        "ceiling_mb": round(rss["ceiling"], 1),
        "goal_met": met,
        "runs": args.runs,
        "load": round(load, 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
