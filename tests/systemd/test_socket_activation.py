"""Socket activation: the socket made by ``systemd-socket-activate`` (as by tailord.socket),
the daemon started by the first connection and handed the socket through LISTEN_FDS."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time

import pytest

from tests.conftest import DaemonProcess, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="SKIPPED LOUDLY: systemd-socket-activate is missing; `apt-get install systemd` "
    "(scripts/setup.sh does it as root) so socket activation is tested",
)


def test_the_first_connection_starts_tailord_on_the_inherited_socket(
    daemon: DaemonProcess,
) -> None:
    daemon.socket.parent.mkdir(mode=0o700)
    # systemd-socket-activate passes on only the variables named with -E.
    keep = [f"-E{name}" for name in os.environ if name.startswith(("COVERAGE", "PYTHON"))]
    with daemon.log.open("ab") as log:
        daemon.process = subprocess.Popen(
            ["systemd-socket-activate", "-l", str(daemon.socket), *keep, *daemon.argv()],
            stdout=log,
            stderr=log,
        )
    wait_for(daemon.socket.exists, timeout=10)
    time.sleep(0.5)
    assert not daemon.data_dir.exists(), "tailord starts only on the first connection"

    assert daemon.version() == 0  # waits in the socket's backlog while tailord starts
    assert "Communication attempt" in daemon.log.read_text()
    mode = stat.S_IMODE(daemon.socket.stat().st_mode)

    assert daemon.stop(signal.SIGTERM) == 0
    # The socket file belongs to whoever made it (systemd): tailord neither changed its
    # mode nor removed it.
    assert daemon.socket.exists()
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == mode
    assert "binding the socket itself" not in daemon.log.read_text()
