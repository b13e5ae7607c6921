"""The machine's conditions as configured in ``[policy]``, measured on the scheduler's timer.

:meth:`Monitor.sample` reads the counters (every ``sample_seconds``); :meth:`Monitor.machine`
answers the configured ``power``, ``window`` and ``idle`` checks from the latest readings, and
:meth:`Monitor.schedule` the cron's. Only configured conditions are answered: a policy
without windows shows no ``window`` entry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from tailord.daemon.conditions.check import Check
from tailord.daemon.conditions.cpu import CpuMeter
from tailord.daemon.conditions.power import check_power, read_power
from tailord.daemon.conditions.schedule import check_schedule
from tailord.daemon.conditions.window import check_windows
from tailord.daemon.config import PolicyConfig


class Monitor:
    def __init__(
        self,
        policy: PolicyConfig,
        root: Path | None = None,  # None: the policy's system_root
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy
        self.root = root = Path(policy.system_root) if root is None else root
        self.wall = wall
        self.zone, self.windows, self.trigger = policy.parsed()
        self.cpu = (
            CpuMeter(policy.idle_seconds, policy.max_cpu_pressure, policy.max_load, root, clock)
            if policy.idle
            else None
        )
        self._lock = threading.Lock()  # sample() runs on the scheduler's thread
        self._due_since: datetime | None = None

    def sample(self, own_pids: Iterable[int] = ()) -> None:
        if self.cpu is not None:
            with self._lock:
                self.cpu.sample(own_pids)

    def machine(self, worker_running: bool = False) -> list[Check]:
        """The configured machine checks; ``worker_running``: tailord's worker is busy (the
        CPU is then measured without it, see cpu.py)."""
        policy, checks = self.policy, []
        if policy.require_power or policy.min_battery > 0:
            checks.append(
                check_power(read_power(self.root), policy.require_power, policy.min_battery)
            )
        if self.windows:
            checks.append(check_windows(self.windows, self.wall().astimezone(self.zone)))
        if self.cpu is not None:
            with self._lock:
                checks.append(self.cpu.check(worker_running))
        return checks

    def expired(self) -> None:
        """An update expired: the machine must be measured idle anew before the next one."""
        if self.cpu is not None:
            with self._lock:
                self.cpu.restart()

    # -- the schedule ------------------------------------------------------------------------

    def schedule(self) -> Check | None:
        if self.trigger is None:
            return None
        now = self.wall().astimezone(self.zone)
        return check_schedule(self.trigger, self._due_since, now)

    def fire(self) -> None:
        """The cron fired (the scheduler's job): an update is due until one starts."""
        if self._due_since is None:
            self._due_since = self.wall().astimezone(self.zone)

    def served(self) -> None:
        """An automatic update started: the schedule is served."""
        self._due_since = None
