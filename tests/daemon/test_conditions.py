"""Each policy condition, driven by injected readings: a fake /proc and /sys root, a fake
clock; and the policy's timers on a real APScheduler."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from tailord.daemon.conditions.cpu import CpuMeter
from tailord.daemon.conditions.monitor import Monitor
from tailord.daemon.conditions.power import check_power, read_power
from tailord.daemon.conditions.schedule import check_schedule, parse_schedule
from tailord.daemon.conditions.window import check_windows, parse_window
from tailord.daemon.config import PolicyConfig
from tailord.daemon.errors import ConfigError
from tailord.daemon.policy import decide


class FakeMachine:
    """A root with proc/stat, proc/pressure/cpu and proc/<pid>/stat, advanced by hand."""

    def __init__(self, root: Path, cores: int = 2, psi: bool = True) -> None:
        self.root, self.cores, self.psi = root, cores, psi
        self.now = 0.0
        self.busy = 0  # ticks (100 a second a core)
        self.idle = 0
        self.pressure_us = 0
        self.own: dict[int, int] = {}
        (root / "proc" / "pressure").mkdir(parents=True)
        self._write()

    def clock(self) -> float:
        return self.now

    def run(self, seconds: float, others: float, own: float = 0.0, pressure: float = 0.0) -> None:
        """``others``/``own``: cores busy with other work / with tailord's worker."""
        ticks = int(seconds * 100 * self.cores)
        busy = int(seconds * 100 * (others + own))
        self.busy += busy
        self.idle += ticks - busy
        self.own[4242] = self.own.get(4242, 0) + int(seconds * 100 * own)
        self.pressure_us += int(seconds * 1e6 * pressure / 100)
        self.now += seconds
        self._write()

    def _write(self) -> None:
        proc = self.root / "proc"
        (proc / "stat").write_text(
            f"cpu  {self.busy} 0 0 {self.idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n"
        )
        if self.psi:
            (proc / "pressure" / "cpu").write_text(
                f"some avg10=0.00 avg60=0.00 avg300=0.00 total={self.pressure_us}\n"
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            )
        for pid, ticks in self.own.items():
            (proc / str(pid)).mkdir(exist_ok=True)
            fields = ["S"] + ["0"] * 10 + [str(ticks), "0"] + ["0"] * 30
            (proc / str(pid) / "stat").write_text(f"{pid} (tailord worker) " + " ".join(fields))


def _meter(machine: FakeMachine) -> CpuMeter:
    return CpuMeter(10.0, 20.0, 0.5, machine.root, machine.clock)


def test_cpu_pressure_sustained_for_idle_seconds_is_busy(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path)
    meter = _meter(machine)
    meter.sample()
    assert meter.check(worker_running=False).ok  # one reading: nothing to say yet
    for _ in range(5):  # a 5 s spike in a 10 s window: not sustained
        machine.run(1, others=2, pressure=60)
        meter.sample()
    check = meter.check(worker_running=False)
    assert check.ok, check.detail
    for _ in range(10):
        machine.run(1, others=2, pressure=43)
        meter.sample()
    check = meter.check(worker_running=False)
    assert not check.ok
    assert check.detail == "CPU pressure 43% > 20% for 10 s"
    machine.run(1, others=0)
    meter.sample()
    assert meter.check(worker_running=False).ok  # no longer sustained


def test_without_psi_the_load_per_core_decides(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path, cores=4, psi=False)
    meter = _meter(machine)
    meter.sample()
    for _ in range(11):
        machine.run(1, others=3)  # 3 of 4 cores: 0.75 per core
        meter.sample()
    check = meter.check(worker_running=False)
    assert not check.ok
    assert check.detail.startswith("load 0.75 per core")
    assert "> 0.5 for 10 s" in check.detail


def test_an_update_alone_on_an_idle_machine_is_not_busy(tmp_path: Path) -> None:
    """tailord's worker uses every core and makes pressure itself: still idle, because
    while it runs its own CPU time is subtracted and pressure is not used."""
    machine = FakeMachine(tmp_path, cores=2)
    meter = _meter(machine)
    meter.sample([4242])
    for _ in range(30):
        machine.run(1, others=0.05, own=1.95, pressure=80)
        meter.sample([4242])
    check = meter.check(worker_running=True)
    assert check.ok, check.detail
    assert check.detail.startswith("load 0.03 per core (tailord's own not counted)")
    # Other work beside the worker is seen, worker or not.
    for _ in range(11):
        machine.run(1, others=1.5, own=0.5)
        meter.sample([4242])
    assert not meter.check(worker_running=True).ok


def test_after_an_expiry_idle_needs_a_whole_new_window(tmp_path: Path) -> None:
    """The window before an expiry overlaps the stopped worker (others then got less of the
    CPU): judged on it, the same update would start again at once, only to expire again."""
    machine = FakeMachine(tmp_path, cores=2, psi=False)
    meter = _meter(machine)
    meter.sample([4242])
    for _ in range(11):
        machine.run(1, others=0.8, own=1.2)  # 0.4 per core beside the worker: under 0.5
        meter.sample([4242])
    assert meter.check(worker_running=False).ok
    meter.restart()  # the update expired
    check = meter.check(worker_running=False)
    assert not check.ok
    assert check.detail == "measuring the CPU again for 10 s after an expiry"
    for _ in range(5):
        machine.run(1, others=0.2)
        meter.sample()
    assert not meter.check(worker_running=False).ok, "half a window is not enough"
    for _ in range(5):
        machine.run(1, others=0.2)
        meter.sample()
    check = meter.check(worker_running=False)
    assert check.ok, check.detail


def _supply(root: Path, name: str, **files: str) -> None:
    folder = root / "sys" / "class" / "power_supply" / name
    folder.mkdir(parents=True)
    for key, value in files.items():
        (folder / key).write_text(value + "\n")


def test_power_mains_battery_and_none(tmp_path: Path) -> None:
    assert read_power(tmp_path).on_mains  # no power_supply class: a desktop or a server
    _supply(tmp_path, "AC", type="Mains", online="0")
    _supply(tmp_path, "BAT0", type="Battery", capacity="64", status="Discharging")
    power = read_power(tmp_path)
    assert (power.on_mains, power.battery) == (False, 64.0)
    check = check_power(power, require_power=True, min_battery=0)
    assert (check.ok, check.detail) == (False, "on battery (64%)")
    assert check_power(power, require_power=False, min_battery=50).ok
    low = check_power(power, require_power=False, min_battery=80)
    assert (low.ok, low.detail) == (False, "battery 64% < 80% (min_battery)")
    (tmp_path / "sys/class/power_supply/AC/online").write_text("1\n")
    on = check_power(read_power(tmp_path), require_power=True, min_battery=90)
    assert (on.ok, on.detail) == (True, "on mains power (battery 64%)")


def test_windows_cross_midnight_and_say_when_they_open() -> None:
    zone = ZoneInfo("Europe/Paris")
    night = (parse_window("22:30-06:00"),)
    inside = check_windows(night, datetime(2026, 12, 1, 23, 0, tzinfo=zone))
    assert (inside.ok, inside.detail) == (True, "inside 22:30-06:00")
    assert check_windows(night, datetime(2026, 12, 1, 5, 59, tzinfo=zone)).ok
    outside = check_windows(night, datetime(2026, 12, 1, 6, 0, tzinfo=zone))
    assert (outside.ok, outside.detail) == (False, "window opens at 22:30")
    assert outside.retry_in == 16.5 * 3600
    two = (parse_window("01:00-02:00"), parse_window("12:00-13:00"))
    assert check_windows(two, datetime(2026, 12, 1, 3, 0, tzinfo=zone)).detail == (
        "window opens at 12:00"
    )
    assert check_windows((), datetime(2026, 12, 1, 3, 0, tzinfo=zone)).ok
    assert check_windows((parse_window("00:00-24:00"),), datetime(2026, 12, 1, tzinfo=zone)).ok


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("windows", '["25:00-06:00"]', 'windows = ["01:00-06:00"]'),
        ("windows", '["1-6"]', "HH:MM-HH:MM"),
        ("schedule", '"every night"', 'schedule = "0 2 * * *"'),
        ("schedule", '"61 * * * *"', "not a cron expression"),
        ("timezone", '"Mars/Olympus"', '"Europe/Paris"'),
        ("idle_seconds", "-1", "idle_seconds = 10.0"),
        ("max_wait_seconds", "-5", "max_wait_seconds = 21600.0"),
        ("max_cpu_pressure", "120", "max_cpu_pressure"),
    ],
)
def test_a_bad_policy_value_stops_start_up_naming_key_value_and_example(
    tmp_path: Path, key: str, value: str, said: str
) -> None:
    from tailord.daemon.config import load_config

    config = tmp_path / "tailord.toml"
    config.write_text(f"[policy]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, data_dir=tmp_path)
    message = str(caught.value)
    assert key in message
    assert said in message
    assert value.strip('"[]') in message or key == "timezone"


def test_the_schedule_is_due_from_its_fire_until_served() -> None:
    zone = ZoneInfo("UTC")
    trigger = parse_schedule("0 2 * * *", zone)
    now = datetime(2026, 12, 1, 1, 30, tzinfo=zone)
    waiting = check_schedule(trigger, None, now)
    assert (waiting.ok, waiting.detail) == (False, "next at 2026-12-01 02:00")
    due = check_schedule(trigger, datetime(2026, 12, 1, 2, 0, tzinfo=zone), now)
    assert (due.ok, due.detail) == (True, "due since 2026-12-01 02:00")


def test_the_policy_combines_the_conditions_and_names_the_first_that_blocks(
    tmp_path: Path,
) -> None:
    _supply(tmp_path, "BAT0", type="Battery", capacity="40", status="Discharging")
    clock = [datetime(2026, 12, 1, 3, 0, tzinfo=UTC)]
    policy = PolicyConfig(
        quiet_seconds=0,
        require_power=True,
        windows=("01:00-06:00",),
        timezone="UTC",
        schedule="0 2 * * *",
    )
    monitor = Monitor(policy, tmp_path, wall=lambda: clock[0])
    decision = decide(
        policy,
        queued=3,
        last_queued_at=0,
        now=100,
        machine=monitor.machine(),
        schedule=monitor.schedule(),
    )
    assert not decision.run
    assert decision.reason == "waiting: on battery (40%)"
    names = [c.name for c in decision.conditions]
    assert names == ["backoff", "min_queued", "quiet", "schedule", "power", "window"]
    assert [c.ok for c in decision.conditions] == [True, True, True, False, False, True]
    # A manual request skips them all.
    assert decide(policy, queued=3, last_queued_at=0, now=100, manual=True).run
    # On mains, but outside the window: it says when the window opens.
    (tmp_path / "sys/class/power_supply/BAT0/status").write_text("Charging\n")
    clock[0] = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    decision = decide(policy, queued=3, last_queued_at=99, now=100, machine=monitor.machine())
    assert decision.reason == "waiting: window opens at 01:00"
    assert decision.retry_in == 18 * 3600


def test_the_schedule_stands_in_for_the_quiet_period_and_max_wait_for_idle(
    tmp_path: Path,
) -> None:
    machine = FakeMachine(tmp_path)
    policy = PolicyConfig(
        quiet_seconds=600, min_queued=5, idle=True, schedule="0 2 * * *", timezone="UTC"
    )
    monitor = Monitor(policy, tmp_path, clock=machine.clock)
    monitor.sample()
    waiting = decide(
        policy,
        queued=1,
        last_queued_at=99,
        now=100,
        machine=monitor.machine(),
        schedule=monitor.schedule(),
    )
    assert waiting.reason == "waiting: 1 queued of the 5 needed (min_queued)"
    monitor.fire()
    due = decide(
        policy,
        queued=1,
        last_queued_at=99,
        now=100,
        machine=monitor.machine(),
        schedule=monitor.schedule(),
    )
    assert due.run
    assert due.reason == "1 queued; the schedule is due"
    monitor.served()
    for _ in range(12):
        machine.run(1, others=2, pressure=90)
        monitor.sample()
    busy = decide(
        policy, queued=9, last_queued_at=0, now=1000, machine=monitor.machine(), oldest_age=60
    )
    assert busy.reason == "waiting: CPU pressure 90% > 20% for 10 s"
    overdue = decide(
        policy,
        queued=9,
        last_queued_at=0,
        now=1000,
        machine=monitor.machine(),
        oldest_age=policy.max_wait_seconds,
    )
    assert overdue.run
    assert "max_wait_seconds" in overdue.reason


def test_the_policy_timers_run_on_a_real_scheduler(tmp_path: Path) -> None:
    """The conditions' tick and the cron job: explicit ids, coalesced, one at a time; a
    tick that finds a condition changed wakes the main loop."""
    from tailord.daemon.updates.guard import Guard, add_policy_jobs
    from tests.daemon.test_api_updates import _updater

    _supply(tmp_path, "BAT0", type="Battery", capacity="40", status="Discharging")
    policy = PolicyConfig(require_power=True, schedule="*/5 * * * *", sample_seconds=0.1)
    monitor = Monitor(policy, tmp_path)
    updater, _ = _updater(tmp_path)
    woken = threading.Event()
    guard = Guard(policy, monitor, updater, list, woken.set)
    scheduler = BackgroundScheduler(timezone=UTC)
    add_policy_jobs(scheduler, policy, monitor, guard, woken.set)
    scheduler.start()
    try:
        assert woken.wait(5)  # the first tick sees the conditions for the first time
        woken.clear()
        assert not woken.wait(0.5)  # nothing changed: no wake-up
        (tmp_path / "sys/class/power_supply/BAT0/status").write_text("Charging\n")
        assert woken.wait(5)  # mains now: decide again
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"conditions", "schedule"}
        for job in jobs.values():
            assert job.coalesce
            assert job.max_instances == 1
        # The re-check's late ticks are dropped; a late cron fire always counts, once.
        assert jobs["conditions"].misfire_grace_time is not None
        assert jobs["schedule"].misfire_grace_time is None
        assert jobs["schedule"].next_run_time.minute % 5 == 0
    finally:
        scheduler.shutdown(wait=True)
        updater.db.close()
