"""A wall-clock step, backward and forward, through an in-process daemon with its real
APScheduler: timers keep running after a step back, a step forward fires each late timer
once (no storm), and the window it lands in is honoured (the update due there starts).

The wall clock is injected: APScheduler 3 and the daemon read it as ``datetime.now``, which
is replaced in the modules that call it by one that adds a settable offset to the real time
(the test cannot step the machine's clock). The monotonic clock is the real one: a step of
the wall clock does not move it, which is the point.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

import msgspec
import numpy as np
import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent

from tailord.daemon.config import load_config
from tailord.daemon.service import Daemon
from tests.conftest import clusters, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # an in-process daemon, a few seconds of timers

# Every module that reads the wall clock for a timer or a condition.
WALL_READERS = (
    "apscheduler.schedulers.base",
    "apscheduler.triggers.interval",
    "apscheduler.triggers.date",
    "apscheduler.executors.base",
    "tailord.daemon.service",
    "tailord.daemon.conditions.monitor",
    "tailord.daemon.clockwatch",
)


class _Wall:
    offset = 0.0  # seconds added to the real wall clock


class _SteppedDatetime(datetime):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + timedelta(seconds=_Wall.offset)


def _updates(database: Path) -> int:
    with sqlite3.connect(database, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM updates").fetchone()[0])


def test_a_step_back_stalls_no_timer_and_a_step_forward_fires_each_once(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _Wall.offset = 0.0
    for module in WALL_READERS:
        monkeypatch.setattr(f"{module}.datetime", _SteppedDatetime)
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    # The schedule fires at start + 30 min; the window opens at start + 1 h 50 min. Only the
    # schedule can make an update due (min_queued is out of reach), and only in the window.
    fires, opens = start + timedelta(minutes=30), start + timedelta(minutes=110)
    closes = opens + timedelta(hours=1)
    config = load_config(
        data_dir=short_tmp / "data", inbox=short_tmp / "inbox", socket=short_tmp / "s.sock"
    )
    config = msgspec.structs.replace(
        config,
        policy=msgspec.structs.replace(
            config.policy,
            min_queued=1000,
            quiet_seconds=0.5,
            sample_seconds=0.2,
            windows=(f"{opens:%H:%M}-{closes:%H:%M}",),
            timezone="UTC",
            schedule=f"{fires:%M} {fires:%H} * * *",
        ),
    )
    rng = np.random.default_rng(1)
    for label, vectors in clusters(rng, 3).items():
        (config.inbox / label).mkdir(parents=True, exist_ok=True)
        for i, vector in enumerate(vectors):
            (config.inbox / label / f"{i}.npy").write_bytes(npy_bytes(vector))

    daemon = Daemon(config)
    ran: list[tuple[str, float]] = []  # (job id, monotonic time) of each timer that ran
    loop = threading.Thread(target=daemon._main_loop, daemon=True)
    try:
        daemon.startup()

        def record(event: JobExecutionEvent) -> None:
            ran.append((event.job_id, time.monotonic()))

        daemon.scheduler.add_listener(record, EVENT_JOB_EXECUTED)
        loop.start()
        wait_for(lambda: "window" in {c.name for c in daemon._conditions}, timeout=30)
        wait_for(lambda: "6 queued" in daemon._policy_reason, timeout=30)

        # One hour back: the conditions' re-check goes on (without the re-arm, its next
        # run would be an hour of wall clock away).
        _Wall.offset = -3600.0
        time.sleep(0.5)  # the main loop's look (every 0.2 s) notices the step
        stepped = time.monotonic()
        time.sleep(2.0)
        ticks = [at for job, at in ran if job == "conditions" and at > stepped]
        assert len(ticks) >= 5, f"the re-check stalled after a step back: {ran[-5:]}"
        assert _updates(config.database) == 0

        # Three hours forward, past the schedule's moment and into the window.
        _Wall.offset = 2 * 3600.0
        stepped = time.monotonic()
        wait_for(lambda: _updates(config.database) >= 1, timeout=30)
        time.sleep(3.0)  # a storm would start more, or fire the timers many times
        assert _updates(config.database) == 1
        assert [job for job, at in ran if at > stepped].count("schedule") == 1
        first_second = [j for j, at in ran if j == "conditions" and stepped < at < stepped + 1]
        assert len(first_second) <= 1 / 0.2 + 2  # a step's backlog is coalesced into one
        with sqlite3.connect(config.database, timeout=30) as conn:
            (reason,) = conn.execute("SELECT reason FROM updates").fetchone()
        assert "schedule is due" in reason
    finally:
        daemon.should_exit = True
        if loop.is_alive():
            loop.join(timeout=30)
        daemon.shutdown()
        _Wall.offset = 0.0
