"""The start-up claim of the directories: before any thread, file or worker, the data
directory is made private and locked, the inbox made, and what the model needs (torch, a
custom backbone) is looked for, each failure one line saying what to do."""

from __future__ import annotations

import contextlib
import os

from tailord.daemon.config import Config
from tailord.daemon.errors import ConfigError
from tailord.daemon.lock import lock_data_dir
from tailord.daemon.privacy import apply_umask, make_inbox, make_private_dir, modes_for, tighten
from tailord.daemon.startup import check_backbone, check_data_dir, check_inbox
from tailord.trainer.loading import torch_missing


def claim_directories(cfg: Config, stack: contextlib.ExitStack) -> None:
    """The data directory made private and locked, the inbox made; torch there if needed.

    What is undone at shutdown goes on ``stack``: the umask restored, the lock released
    (after the database, which is pushed later).
    """
    # First of all, before any thread, file or worker: what is made from now on is private.
    modes = modes_for(cfg.group)
    old_umask = apply_umask(modes)
    stack.callback(os.umask, old_umask)
    check_data_dir(cfg.data_dir)  # one line if it is not a writable folder
    make_private_dir(cfg.data_dir, modes)
    # Before anything reads or repairs the data directory: a second daemon must leave
    # the first one's update and staging alone. Released last, after the database.
    stack.callback(lock_data_dir(cfg.data_dir).release)
    check_inbox(cfg.inbox, lambda inbox: make_inbox(inbox, modes))
    tighten(cfg.data_dir, modes, skip=(cfg.inbox, cfg.socket))
    if (missing := torch_missing(cfg.model)) is not None:  # say so now, not mid-update
        raise ConfigError(missing)
    check_backbone(cfg.model)  # now, not at the first update
