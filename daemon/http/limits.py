"""What one socket client may hold: connections, time, and memory in half-sent bodies.

Every input a client controls is bounded here, so that no client (a bug or an attacker with
access to the socket) can take the daemon's memory, descriptors or threads from the others.
The values come from ``[api]`` (docs/configuration.md); docs/reliability.md says what
happens at each.
"""

from __future__ import annotations

import contextlib
import logging
import resource
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Descriptors kept free of connections: the database, inbox scans, the worker's pipes, logs.
RESERVED_FDS = 128


@dataclass(frozen=True)
class Limits:
    # Open connections at most; at the cap the longest-idle one is closed to make room, and
    # when none is idle a newcomer is answered 503 with Retry-After.
    max_connections: int = 512
    # From a request's first byte to the end of its headers; bytes do not extend it.
    header_timeout: float = 10.0
    # From the end of the headers to the end of the body (Content-Length bytes).
    body_timeout: float = 30.0
    # Bytes announced by the Content-Length of bodies still arriving, over all connections.
    max_pending_body_bytes: int = 64 * 1024 * 1024
    # Requests read ahead on one connection while an earlier one is answered (pipelining).
    max_pipelined: int = 16
    # Answers written but not yet read by the client: above this, the server stops reading
    # that connection until the client has read some (the transport's high-water mark).
    max_unsent_bytes: int = 256 * 1024


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force.

    The default soft limit (1024) is far below what systemd grants as hard limit; descriptors
    cost the kernel little, and running out of them fails inbox scans (EMFILE).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def connection_cap(limits: Limits, fd_limit: int) -> int:
    """The connections served at once: the configured cap, kept below the descriptor limit."""
    cap = min(limits.max_connections, max(8, fd_limit - RESERVED_FDS))
    if cap < limits.max_connections:
        logger.warning(
            "serving at most %d connections, not %d: the descriptor limit is %d; "
            "raise LimitNOFILE= in the unit (or ulimit -n)",
            cap,
            limits.max_connections,
            fd_limit,
        )
    return cap
