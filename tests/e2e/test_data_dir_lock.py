"""One daemon per data directory: a second ``tailord serve`` is refused and changes nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tailord.daemon.lock import LOCK_NAME
from tests.conftest import DaemonProcess, wait_for


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    from tailord.daemon.lock import lock_data_dir

    held = lock_data_dir(tmp_path)
    try:
        refused = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from tailord.daemon.lock import "
                "lock_data_dir; lock_data_dir(Path(sys.argv[1]))",
                str(tmp_path),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 1
        assert f"DataDirLocked: another tailord (pid {os.getpid()})" in refused.stderr
    finally:
        held.release()
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"  # the refused one wrote none
    lock_data_dir(tmp_path).release()  # released: the next one takes it


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except FileNotFoundError:
                continue
            todo.extend(children - found)
            found |= children
    return found


def holds(pid: int, path: Path) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if Path(os.readlink(fd)) == path:
                return True
        except FileNotFoundError:
            continue
    return False


@pytest.mark.slow  # three daemons start, one with a prewarmed worker
def test_a_second_daemon_is_refused_and_the_first_keeps_serving(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    config = short_tmp / "t.toml"
    # A worker process that could inherit (a trained head: a k-NN one has no worker)
    config.write_text('[model]\nhead = "linear"\n[worker]\nprewarm = true\n')
    daemon.start("--config", str(config), "--quiet-seconds", "3600")
    assert daemon.process is not None
    first = daemon.process.pid
    lock = daemon.data_dir / LOCK_NAME
    assert lock.read_text() == f"{first}\n"
    # What a second daemon's start-up repair would undo: a candidate being staged and an
    # update marked running.
    staged = daemon.data_dir / "staging" / "update-99" / "weights.safetensors"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"half a candidate")
    with sqlite3.connect(daemon.data_dir / "tailord.db") as db:
        db.execute(
            "INSERT INTO updates (id, state, reason, started_at, base_version, sample_count, "
            "metrics) VALUES (99, 'running', 'probe', 0, 0, 0, '{}')"
        )

    second = subprocess.run(
        [*daemon.argv("--config", str(config)), "--socket", str(short_tmp / "run" / "b.sock")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    errors = [line for line in second.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, second.stderr
    assert f"another tailord (pid {first}) is using the data directory" in errors[0]
    assert "--data-dir" in errors[0]  # it says what to do
    assert staged.read_bytes() == b"half a candidate"
    with sqlite3.connect(daemon.data_dir / "tailord.db") as db:
        assert db.execute("SELECT state FROM updates WHERE id = 99").fetchone() == ("running",)
    assert not (short_tmp / "run" / "b.sock").exists()
    assert daemon.version() == 0  # the first one still serves
    assert lock.read_text() == f"{first}\n"

    # No child of the daemon (the spare worker, multiprocessing's helpers) holds the lock
    # file open: after a SIGKILL of the daemon, nothing keeps the next one out.
    workers = wait_for(lambda: descendants(first), timeout=30)
    assert isinstance(workers, set)
    assert holds(first, lock)
    assert not any(holds(pid, lock) for pid in workers)
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    daemon.start()  # at once: the kernel dropped the dead daemon's lock
    assert daemon.process is not None
    assert lock.read_text() == f"{daemon.process.pid}\n"
    assert daemon.version() == 0
    assert daemon.stop() == 0
    daemon.start()  # and a clean stop releases it too
    assert daemon.version() == 0
