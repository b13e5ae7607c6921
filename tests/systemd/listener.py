"""A test ``$NOTIFY_SOCKET``: the datagram socket systemd listens on, made of a real one."""

from __future__ import annotations

import socket
import time
from pathlib import Path


class NotifyListener:
    """Receives sd_notify datagrams; each is parsed into its ``KEY=value`` fields."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append(fields)
        return fields

    def wait_for(self, key: str, timeout: float = 60.0, value: str | None = None) -> dict[str, str]:
        """The next message that has ``key`` (with ``value``, if given); others are kept."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            fields = self.receive(left)
            if fields is not None and key in fields and value in (None, fields[key]):
                return fields
        raise AssertionError(f"no {key}= within {timeout}s; got {self.messages}")

    def drain(self, seconds: float) -> list[dict[str, str]]:
        """Every message that arrives within ``seconds``."""
        got: list[dict[str, str]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            fields = self.receive(left)
            if fields is not None:
                got.append(fields)
        return got

    def close(self) -> None:
        self.sock.close()
