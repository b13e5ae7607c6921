"""Local-time windows such as ``01:00-06:00`` (one may cross midnight)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from tailord.daemon.conditions.check import Check

_FORMAT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")
EXAMPLE = '["01:00-06:00"]'


@dataclass(frozen=True)
class Window:
    start: int  # minutes after midnight
    end: int  # minutes after midnight; below start: the window crosses midnight
    text: str

    def contains(self, minute: int) -> bool:
        if self.start == self.end:
            return True  # "00:00-24:00" or "05:00-05:00": all day
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def parse_window(text: str) -> Window:
    """``"HH:MM-HH:MM"``; raises ValueError naming what is wrong."""
    found = _FORMAT.match(text.strip())
    if found is None:
        raise ValueError(f"window {text!r} is not HH:MM-HH:MM (24-hour local time)")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if h2 == 24 and m2 != 0:
        raise ValueError(f"window {text!r} ends after 24:00")
    return Window(h1 * 60 + m1, (h2 * 60 + m2) % (24 * 60), text.strip())


def check_windows(windows: tuple[Window, ...], now: datetime) -> Check:
    """Whether local time ``now`` (aware, in the configured zone) is inside a window."""
    if not windows:
        return Check("window", True, "any time (no windows)")
    minute = now.hour * 60 + now.minute
    for window in windows:
        if window.contains(minute):
            return Check("window", True, f"inside {window.text}")
    opens = min((_next_start(w, now) for w in windows), key=lambda at: at)
    wait = (opens - now).total_seconds()
    return Check("window", False, f"window opens at {opens:%H:%M}", max(wait, 1.0))


def _next_start(window: Window, now: datetime) -> datetime:
    start = now.replace(hour=window.start // 60, minute=window.start % 60, second=0, microsecond=0)
    # Wall-clock arithmetic (zoneinfo): the opening is at that local time the next day.
    return start + timedelta(days=1) if start <= now else start
