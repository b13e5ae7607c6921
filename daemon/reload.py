"""SIGHUP: the configuration file read again, and what of it applies without a restart.

Only ``[policy]`` applies live: the policy is asked afresh on every wake-up, so a new
``quiet_seconds`` counts from the next one. Every other key shapes a part that is built
once at start-up (the model, the socket, the inbox's watch, the worker), so a changed one is
logged as waiting for a restart, and the running value is kept until then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from tailord.daemon.config import Config
from tailord.daemon.errors import TailordError
from tailord.daemon.text import escape

logger = logging.getLogger(__name__)

LIVE_SECTIONS = frozenset({"policy"})


@dataclass(frozen=True)
class Reloaded:
    config: Config  # what the daemon runs with from now on
    applied: tuple[str, ...]  # dotted keys changed and applied
    need_restart: tuple[str, ...]  # dotted keys changed, kept at their running value


def changed_keys(old: Config, new: Config) -> list[str]:
    """The dotted keys (``policy.quiet_seconds``) whose values differ."""
    old_table = msgspec.to_builtins(old, enc_hook=str)  # paths as text
    return sorted(_diff(old_table, msgspec.to_builtins(new, enc_hook=str), ""))


def _diff(old: Any, new: Any, prefix: str) -> set[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys: set[str] = set()
        for key in old.keys() | new.keys():
            keys |= _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return keys
    return set() if old == new else {prefix.rstrip(".")}


def reload(running: Config, load: Callable[[], Config]) -> Reloaded:
    """Read the configuration again with ``load``; a bad file keeps ``running`` as is.

    Raises the loader's ``TailordError`` (an invalid file) for the caller to log.
    """
    new = load()
    changed = changed_keys(running, new)
    applied = tuple(key for key in changed if key.split(".", 1)[0] in LIVE_SECTIONS)
    restart = tuple(key for key in changed if key not in applied)
    config = msgspec.structs.replace(running, policy=new.policy) if applied else running
    return Reloaded(config, applied, restart)


def reload_and_log(running: Config, load: Callable[[], Config]) -> Config:
    """:func:`reload`, each outcome said in the log; returns the config to run with."""
    try:
        outcome = reload(running, load)
    except TailordError as exc:
        logger.error(
            "reload refused, the running configuration is kept: %s",
            escape(" ".join(str(exc).split())),
        )
        return running
    if outcome.applied:
        logger.info("reloaded; applied %s", ", ".join(outcome.applied))
    if outcome.need_restart:
        logger.warning(
            "changed keys that apply only on a restart (`systemctl restart tailord`): %s",
            ", ".join(outcome.need_restart),
        )
    if not outcome.applied and not outcome.need_restart:
        logger.info("reloaded; the configuration is unchanged")
    return outcome.config
