"""Power: on mains or on battery, from ``/sys/class/power_supply``.

A supply of type ``Mains`` (or ``USB``) with ``online`` = 1 means mains. Without any
battery, a machine counts as on mains (a desktop, a server, a container that hides the
supplies). A battery that is ``Charging`` or ``Full`` is on mains too, even if the adapter
is not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tailord.daemon.conditions.check import Check

SUPPLIES = "sys/class/power_supply"


@dataclass(frozen=True)
class Power:
    on_mains: bool
    battery: float | None  # percent of the fullest battery; None: no battery


def read_power(root: Path) -> Power:
    """The power state read under ``root`` (``/`` on a real machine)."""
    folder = root / SUPPLIES
    mains = False
    batteries: list[float] = []
    charging = False
    try:
        supplies = sorted(folder.iterdir())
    except OSError:
        return Power(True, None)  # no power_supply class at all: a machine on mains
    for supply in supplies:
        kind = _read(supply / "type")
        if kind in ("Mains", "USB") and _read(supply / "online") == "1":
            mains = True
        elif kind == "Battery" and _read(supply / "present") != "0":
            capacity = _read(supply / "capacity")
            if capacity is not None and capacity.isdigit():
                batteries.append(float(capacity))
            if _read(supply / "status") in ("Charging", "Full"):
                charging = True
    if not batteries:
        return Power(True, None)
    return Power(mains or charging, max(batteries))


def check_power(power: Power, require_power: bool, min_battery: float) -> Check:
    """``require_power``: on mains only; else on battery, at least ``min_battery`` percent."""
    if power.on_mains:
        where = "no battery" if power.battery is None else f"battery {power.battery:.0f}%"
        return Check("power", True, f"on mains power ({where})")
    level = power.battery or 0.0
    if require_power:
        return Check("power", False, f"on battery ({level:.0f}%)")
    if level < min_battery:
        return Check("power", False, f"battery {level:.0f}% < {min_battery:g}% (min_battery)")
    return Check("power", True, f"on battery at {level:.0f}% >= {min_battery:g}%")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
