"""A peer's supplementary groups come from the kernel (SO_PEERGROUPS), not from /proc,
which systemd's ProtectProc=invisible hides from the daemon."""

from __future__ import annotations

import os
import socket

from tailord.daemon.http.auth import Authorizer, Peer, peer_of


def test_the_peer_groups_are_the_kernels_record() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        peer = peer_of(ours)
    assert peer.pid == os.getpid()
    assert peer.groups is not None
    assert peer.groups == frozenset(os.getgroups())


def test_a_group_member_is_allowed_without_proc() -> None:
    authorizer = Authorizer([], ["4242"])
    # pid 0: no /proc entry to read; the groups recorded at connect decide.
    assert authorizer.allows(Peer(0, 5000, 5000, frozenset({4242})))
    assert not authorizer.allows(Peer(0, 5000, 5000, frozenset({1})))
