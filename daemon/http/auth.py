"""Who may use the socket: the peer's credentials (SO_PEERCRED) against the allow-lists."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tailord.daemon.errors import ConfigError


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    """The credentials the kernel recorded when the peer connected; it cannot forge them."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


class Authorizer:
    """Whether a peer may use the API: the daemon's own uid, root, and the allow-lists."""

    def __init__(self, users: Iterable[str], groups: Iterable[str]) -> None:
        self.uids = {0, os.getuid(), *(_resolve(u, pwd.getpwnam, "pw_uid") for u in users)}
        self.gids = {_resolve(g, grp.getgrnam, "gr_gid") for g in groups}

    def allows(self, peer: Peer) -> bool:
        if peer.uid in self.uids:
            return True
        return bool(self.gids) and bool(self.gids & _peer_groups(peer))


def _resolve(name: str, lookup: Callable[[str], object], attr: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return int(getattr(lookup(name), attr))
    except KeyError as exc:
        raise ConfigError(f"[api] names {name!r}, which this system does not know") from exc


def _peer_groups(peer: Peer) -> set[int]:
    groups = {peer.gid}
    # Supplementary groups are not in SO_PEERCRED; the peer's /proc entry has them.
    with contextlib.suppress(OSError), open(f"/proc/{peer.pid}/status") as status:
        for line in status:
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    return groups
