"""Whether the machine is busy with other work: CPU pressure, or CPU use per core.

Readings are cumulative counters sampled every few seconds (:class:`CpuMeter`), so "busy"
is measured over the last ``idle_seconds`` rather than read from the kernel's own averages:

- **pressure** (``/proc/pressure/cpu``, ``some total``: microseconds in which at least one
  runnable task waited for a CPU), as a percentage of the interval. Used while tailord has
  no worker running: it is the best sign that someone else wants the CPU.
- **load per core**: the CPU time all processes used (``/proc/stat``) minus what tailord's
  own processes used (``/proc/<pid>/stat``, the daemon and its worker), divided by the time
  all cores had. Always measured (above ``max_load`` is busy too: it is how a machine
  without PSI is judged), and the only measure while tailord's worker runs: the
  worker's own CPU time is known exactly and subtracted, so an update alone on an idle
  machine measures about 0 and never expires itself. Pressure cannot be split like that (a
  worker at ``nice`` 10 waits whenever anyone else runs, and with more threads than cores
  it makes pressure by itself).

Busy means every interval sampled over the last ``idle_seconds`` was above the limit
(sustained, not a spike); the figure shown is the mean over that time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from tailord.daemon.conditions.check import Check


@dataclass(frozen=True)
class CpuReading:
    at: float  # the meter's clock (monotonic), seconds
    pressure_us: int | None  # /proc/pressure/cpu "some total"; None without PSI
    busy: int  # clock ticks all CPUs spent on work, /proc/stat
    total: int  # clock ticks all CPUs had, busy or idle
    own: dict[int, int]  # pid -> clock ticks used by tailord's own processes


def read_cpu(root: Path, own_pids: Iterable[int], at: float) -> CpuReading:
    """One reading under ``root`` (``/`` on a real machine)."""
    proc = root / "proc"
    busy, total = _stat(proc / "stat")
    own: dict[int, int] = {}
    for pid in own_pids:
        ticks = _process_ticks(proc / str(pid) / "stat")
        if ticks is not None:
            own[pid] = ticks
    return CpuReading(at, _pressure(proc / "pressure" / "cpu"), busy, total, own)


class CpuMeter:
    """The last ``idle_seconds`` of readings, and the ``idle`` condition from them."""

    def __init__(
        self,
        idle_seconds: float,
        max_pressure: float,
        max_load: float,
        root: Path = Path("/"),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_pressure = max_pressure
        self.max_load = max_load
        self.root = root
        self.clock = clock or time.monotonic
        self._readings: deque[CpuReading] = deque()
        # After an expiry: not idle until a whole window measured since says so. The window
        # before it overlaps the stopped worker's last moments, and would start the same
        # update again at once, to be expired again (flapping).
        self._fresh_window_needed = False

    def restart(self) -> None:
        """Forget the readings: ``idle`` holds again only once a whole new window says so."""
        self._readings = deque(list(self._readings)[-1:])
        self._fresh_window_needed = True

    def sample(self, own_pids: Iterable[int] = ()) -> None:
        reading = read_cpu(self.root, own_pids, self.clock())
        self._readings.append(reading)
        # Keep one reading older than the window, so the window is covered end to end.
        while len(self._readings) > 2 and self._readings[1].at <= reading.at - self.idle_seconds:
            self._readings.popleft()

    def check(self, worker_running: bool) -> Check:
        readings = list(self._readings)
        span = f"{self.idle_seconds:g} s"
        covered = len(readings) >= 2 and (
            readings[-1].at - readings[0].at >= self.idle_seconds * 0.95
        )
        if self._fresh_window_needed and not covered:
            return Check("idle", False, f"measuring the CPU again for {span} after an expiry")
        if len(readings) < 2:
            return Check("idle", True, "measuring the CPU (no reading yet)")
        first, last = readings[0], readings[-1]
        measures = []  # (figure over the window, sustained above its limit, how to say it)
        if last.pressure_us is not None and not worker_running:
            mean = _pressure_pct(first, last)
            above = all(_pressure_pct(a, b) > self.max_pressure for a, b in pairwise(readings))
            measures.append((above, f"CPU pressure {mean:.0f}%", f"{self.max_pressure:g}%"))
        mean = _load(first, last)
        above = all(_load(a, b) > self.max_load for a, b in pairwise(readings))
        measures.append(
            (above, f"load {mean:.2f} per core (tailord's own not counted)", f"{self.max_load:g}")
        )
        for above, what, bound in measures:
            if covered and above:
                return Check("idle", False, f"{what} > {bound} for {span}")
        self._fresh_window_needed = False
        said = ", ".join(f"{what} <= {bound}" for _, what, bound in measures)
        return Check("idle", True, f"{said} over {span}")


def _pressure_pct(a: CpuReading, b: CpuReading) -> float:
    assert a.pressure_us is not None
    assert b.pressure_us is not None
    seconds = b.at - a.at
    if seconds <= 0:
        return 0.0
    return max(0.0, (b.pressure_us - a.pressure_us) / 1e6 / seconds * 100.0)


def _load(a: CpuReading, b: CpuReading) -> float:
    total = b.total - a.total
    if total <= 0:
        return 0.0
    own = sum(b.own[pid] - a.own[pid] for pid in b.own.keys() & a.own.keys())
    return max(0.0, (b.busy - a.busy - own) / total)


def _stat(path: Path) -> tuple[int, int]:
    with open(path) as f:
        for line in f:
            if line.startswith("cpu "):
                # user nice system idle iowait irq softirq steal (guest is inside user)
                ticks = [int(v) for v in line.split()[1:9]]
                ticks += [0] * (8 - len(ticks))
                idle = ticks[3] + ticks[4]
                return sum(ticks) - idle, sum(ticks)
    raise OSError(f"{path} has no 'cpu' line")


def _pressure(path: Path) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("some "):
                    for part in line.split()[1:]:
                        key, _, value = part.partition("=")
                        if key == "total":
                            return int(value)
    except (OSError, ValueError):
        pass  # no PSI (old kernel, or psi=0 on the command line): load per core instead
    return None


def _process_ticks(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None  # the process has ended
    # The name (field 2) may hold spaces or parentheses: split after its closing one.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (all threads)
