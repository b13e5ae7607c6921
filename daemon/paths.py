"""Where the daemon keeps its data and its socket, by default.

Standard library only: ``tailorctl`` finds the socket with this and must start without
importing the configuration's model and trainer types (and so torch).
"""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_NAME = "tailord.sock"
SYSTEM_SOCKET = Path("/run/tailord/tailord.sock")  # the system service's RuntimeDirectory


def default_data_dir() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else the XDG data home."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "tailord"


def default_socket() -> Path:
    """``$TAILORD_SOCKET``, else ``$RUNTIME_DIRECTORY`` under systemd, else the XDG runtime
    dir, else a private folder in /tmp."""
    explicit = os.environ.get("TAILORD_SOCKET")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / SOCKET_NAME
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "tailord" / SOCKET_NAME
    return Path(f"/tmp/tailord-{os.getuid()}") / SOCKET_NAME  # noqa: S108 (created 0700, owned)
