"""Start-up errors are one line with the path and what to do, and exit code 2: never a traceback.

Real folders, real mounts (a read-only and a full tmpfs; root only), a real other user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess
from tests.e2e.test_disk_full import fill, small_tmpfs

pytestmark = pytest.mark.slow

NOBODY = 65534


def one_error_line(daemon: DaemonProcess, *extra: str, prefix: tuple[str, ...] = ()) -> str:
    """Run ``tailord serve`` to its end; its one ERROR line (it must exit with code 2)."""
    finished = subprocess.run(
        [*prefix, *daemon.argv(*extra)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=daemon.root,
    )
    assert finished.returncode == 2, finished.stderr
    assert "Traceback" not in finished.stderr, finished.stderr
    errors = [line for line in finished.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, finished.stderr
    return errors[0]


def config(daemon: DaemonProcess, text: str) -> str:
    path = daemon.root / "tailord.toml"
    path.write_text(text)
    return str(path)


def test_an_unimportable_custom_backbone_is_found_at_start_up(daemon: DaemonProcess) -> None:
    settings = config(
        daemon, '[model]\nbackbone = "no_such_pkg.nets:build"\nhead = "linear"\ndim = 4\n'
    )
    line = one_error_line(daemon, "--config", settings)
    assert "no_such_pkg" in line
    assert "install the package" in line


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("policy", "check_seconds", "1e300"), ("ingest", "rescan_seconds", "1e12")],
)
def test_a_duration_beyond_a_year_is_refused_in_one_line(
    daemon: DaemonProcess, section: str, key: str, value: str
) -> None:
    settings = config(daemon, f"[{section}]\n{key} = {value}\n")
    line = one_error_line(daemon, "--config", settings)
    assert f"[{section}] {key} = " in line
    assert "<= 31536000" in line


def test_a_data_dir_owned_by_another_user_is_one_line(daemon: DaemonProcess) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv, to run the daemon without CAP_DAC_OVERRIDE")
    daemon.data_dir.mkdir(mode=0o700)
    os.chown(daemon.data_dir, NOBODY, NOBODY)  # another user's, closed to others
    # Root without the capabilities that ignore permission bits: as any other user would.
    drop = "-dac_override,-dac_read_search"
    line = one_error_line(
        daemon, prefix=(setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", "--")
    )
    assert str(daemon.data_dir) in line
    assert "permission denied" in line
    assert "chown" in line


def test_a_read_only_data_dir_is_one_line(daemon: DaemonProcess) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to mount a read-only file system")
    daemon.data_dir.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(daemon.data_dir)],
        check=False,
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        line = one_error_line(daemon)
    finally:
        subprocess.run(["umount", "-l", str(daemon.data_dir)], check=False)
    assert str(daemon.data_dir) in line
    assert "read-only" in line
    assert "remount" in line


def test_a_full_disk_on_the_first_start_is_one_line(daemon: DaemonProcess) -> None:
    with small_tmpfs(daemon.data_dir, size="2m"):
        fill(daemon.data_dir)
        line = one_error_line(daemon)
    assert str(daemon.data_dir) in line
    assert "full" in line
    assert "free space" in line


def test_the_inbox_that_cannot_be_made_is_one_line(daemon: DaemonProcess) -> None:
    Path(daemon.root / "inbox").write_text("a file, not a folder")
    line = one_error_line(daemon)
    assert str(daemon.inbox) in line
