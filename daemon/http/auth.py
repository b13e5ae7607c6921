"""Who may use the socket: the peer's credentials (SO_PEERCRED) against the allow-lists."""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tailord.daemon.errors import ConfigError

# Linux's SO_PEERGROUPS (4.13+), which Python's socket module does not name.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
MAX_GROUPS = 65536  # NGROUPS_MAX


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: frozenset[int] | None = None  # supplementary groups, when the kernel said


def peer_of(sock: socket.socket) -> Peer:
    """The credentials the kernel recorded when the peer connected; it cannot forge them."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid, _peer_groups_of(sock))


def _peer_groups_of(sock: socket.socket) -> frozenset[int] | None:
    # The supplementary groups as they were at connect(), from the kernel: race-free, and
    # needing no /proc (which systemd's ProtectProc=invisible hides from the daemon).
    size = 64 * 4
    while size <= MAX_GROUPS * 4:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
        except OSError as exc:
            if exc.errno == errno.ERANGE:
                size *= 16
                continue
            return None  # an older kernel, or not a Unix socket
        return frozenset(struct.unpack(f"{len(raw) // 4}I", raw))
    return None


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
    if peer.groups is not None:
        return groups | peer.groups
    # Supplementary groups are not in SO_PEERCRED; the peer's /proc entry has them.
    with contextlib.suppress(OSError), open(f"/proc/{peer.pid}/status") as status:
        for line in status:
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    return groups
