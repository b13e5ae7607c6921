"""Privacy by default: the data folder 0700 and its files 0600 (or 2750/0640 for a group),
whatever umask the daemon starts under, umask 000 included."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProcess, npy_bytes, wait_for


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)  # the daemon's process inherits it
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Every folder and regular file under ``root`` (symlinks not followed) and its mode."""
    found: dict[str, int] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            info = path.lstat()
            if not stat.S_ISLNK(info.st_mode):
                found[str(path.relative_to(root))] = stat.S_IMODE(info.st_mode)
    return found


def _run_with_a_version_and_a_rejection(daemon: DaemonProcess, *extra: str) -> None:
    with umask(0):
        daemon.start(*extra)
    daemon.drop("cat", "bad.npy", b"not numpy")
    for i in range(3):
        daemon.drop("cat", f"{i}.npy", npy_bytes(np.full(4, float(i), np.float32)))
    wait_for(lambda: daemon.version() >= 1, timeout=90)
    wait_for((daemon.inbox / ".rejected" / "bad.npy.reason").exists, timeout=30)
    assert daemon.stop() == 0


@pytest.mark.slow  # a daemon starts, ingests and publishes
def test_every_file_is_private_under_umask_000(daemon: DaemonProcess) -> None:
    # Made by an older release under umask 022: tightened at start-up.
    daemon.data_dir.mkdir(mode=0o755)
    os.chmod(daemon.data_dir, 0o755)
    (daemon.data_dir / "old-note.txt").write_text("x")
    os.chmod(daemon.data_dir / "old-note.txt", 0o644)

    _run_with_a_version_and_a_rejection(daemon)

    data = modes(daemon.data_dir)
    for name in ("tailord.db", "tailord.lock", "versions/1/weights.safetensors", "old-note.txt"):
        assert name in data, sorted(data)
    assert stat.S_IMODE(daemon.data_dir.stat().st_mode) == 0o700
    wrong = {
        name: oct(mode)
        for name, mode in data.items()
        if mode != (0o700 if (daemon.data_dir / name).is_dir() else 0o600)
    }
    assert not wrong
    inbox = modes(daemon.inbox)
    assert stat.S_IMODE(daemon.inbox.stat().st_mode) == 0o700  # made by the daemon
    assert inbox[".rejected"] == 0o700
    assert inbox[".rejected/bad.npy.reason"] == 0o600


@pytest.mark.slow
def test_a_configured_group_may_read(daemon: DaemonProcess) -> None:
    config = daemon.root / "t.toml"
    config.write_text(f"group = {str(os.getgid())!r}\n".replace("'", '"'))
    _run_with_a_version_and_a_rejection(daemon, "--config", str(config))
    data = modes(daemon.data_dir)
    assert stat.S_IMODE(daemon.data_dir.stat().st_mode) == 0o2750
    wrong = {
        name: oct(mode)
        for name, mode in data.items()
        if mode != (0o2750 if (daemon.data_dir / name).is_dir() else 0o640)
    }
    assert not wrong
    assert stat.S_IMODE(daemon.inbox.stat().st_mode) == 0o2770
