"""``http.client`` over a Unix socket, for raw requests the :class:`Client` does not make
(tests of malformed requests, headers, pipelining).

Kept out of ``client.py``: ``http.client`` imports the email parser and ssl, which
``tailorctl`` does not need (it speaks through :mod:`tailord.daemon.ctl.transport`).
"""

from __future__ import annotations

import http.client
import socket
from pathlib import Path


class UnixHTTPConnection(http.client.HTTPConnection):
    """An ``http.client.HTTPConnection`` to the daemon's socket."""

    def __init__(self, path: Path, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock
