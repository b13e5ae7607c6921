"""Labelled crash points: a test hook that kills the process at a named step of publishing.

Set ``TAILORD_CRASH_AT`` to a step name (see :data:`STEPS`) and the process sends itself
SIGKILL when it reaches that step, exactly as a power cut or the OOM killer would stop it: no
``finally`` blocks, no flushing. The crash tests use it to prove that every step is safe.
Unset (the normal case) it costs one environment lookup per step.
"""

from __future__ import annotations

import logging
import os
import signal

logger = logging.getLogger(__name__)

ENV = "TAILORD_CRASH_AT"

# In the order publish reaches them.
STEPS = (
    "staged",  # the candidate's files are written in staging/, nothing fsynced yet
    "files-synced",  # files fsynced and manifest written, the folder not yet fsynced
    "folder-synced",  # the staging folder fsynced, not yet renamed
    "renamed",  # renamed into versions/, versions/ not yet fsynced
    "versions-synced",  # versions/ fsynced, current not yet flipped
    "temp-link",  # the temporary symlink exists, not yet renamed over current
    "flipped",  # current flipped and fsynced, the version row not yet committed
    "committed",  # the row committed and samples marked learned, not yet swapped in
    "gc-removed",  # an old version's folder removed, its row not yet marked removed
)


def crash_point(step: str) -> None:
    """Kill this process with SIGKILL if ``TAILORD_CRASH_AT`` names ``step``."""
    if os.environ.get(ENV) == step:
        logger.critical("crash point %r reached: killing myself (%s is set)", step, ENV)
        os.kill(os.getpid(), signal.SIGKILL)
