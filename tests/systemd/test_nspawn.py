"""The integration test under a real systemd: tests/systemd/nspawn/run.sh, from CI's suite.

It boots a minimal Debian root with systemd-nspawn into a driver unit (driver.sh lists the
checks) and passes when the container exits 0. About 25-35 s with the root cached
(~/.cache/tailord-nspawn); the first run debootstraps it (a few minutes, network needed).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_others_may_enter_the_checkout

RUN = Path(__file__).resolve().parent / "nspawn" / "run.sh"


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="SKIPPED LOUDLY: the nspawn integration test needs root (systemd-nspawn, "
    "debootstrap); run tests/systemd/nspawn/run.sh as root",
)
def test_tailord_under_a_real_systemd() -> None:
    require_others_may_enter_the_checkout()  # the unit's User=tailord runs it, bound read-only
    run = subprocess.run([str(RUN)], capture_output=True, text=True, timeout=1100, check=False)
    report = "\n".join(
        line
        for line in (run.stdout + run.stderr).splitlines()
        if "driver:" in line or "run.sh" in line
    )
    assert run.returncode == 0, (
        f"{report}\n--- last output ---\n{run.stdout[-6000:]}{run.stderr[-3000:]}"
    )
    assert "driver: 0 failure(s)" in report
