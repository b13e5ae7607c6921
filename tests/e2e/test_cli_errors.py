"""``tailord serve`` ends every tailord error as one log line and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess

from tailord.storage.versions import WEIGHTS
from tests.conftest import DaemonProcess


def test_a_data_dir_without_a_valid_version_is_one_line_and_code_2(
    daemon: DaemonProcess,
) -> None:
    daemon.start("--quiet-seconds", "3600")
    assert daemon.version() == 0
    assert daemon.stop() == 0
    weights = daemon.data_dir / "versions" / "0" / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))  # the only version, corrupt

    finished = subprocess.run(
        daemon.argv(), check=False, capture_output=True, text=True, timeout=120
    )

    assert finished.returncode == 2, finished.stderr
    assert "Traceback" not in finished.stderr
    errors = [line for line in finished.stderr.splitlines() if " ERROR tailord: " in line]
    assert len(errors) == 1, finished.stderr
    assert "no valid version under" in errors[0]
    assert "restore a version folder from a backup" in errors[0]  # it says what to do


def test_a_bad_config_is_one_line_and_code_2(daemon: DaemonProcess) -> None:
    config = daemon.root / "tailord.toml"
    config.write_text('[model]\nhead = "forest"\n')

    finished = subprocess.run(
        daemon.argv("--config", str(config)),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 2, finished.stderr
    assert "Traceback" not in finished.stderr
    assert "forest" in finished.stderr
