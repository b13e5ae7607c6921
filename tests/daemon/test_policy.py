"""The update policy decides from the queue and the clock, and says why."""

from __future__ import annotations

from tailord.daemon.config import PolicyConfig
from tailord.daemon.policy import decide

POLICY = PolicyConfig(min_queued=3, quiet_seconds=10)


def test_nothing_queued_never_runs_even_when_asked() -> None:
    decision = decide(POLICY, queued=0, last_queued_at=None, now=100, manual=True)
    assert not decision.run
    assert decision.reason == "nothing queued"


def test_waits_for_enough_samples() -> None:
    decision = decide(POLICY, queued=2, last_queued_at=0, now=100)
    assert not decision.run
    assert "min_queued" in decision.reason


def test_waits_for_the_quiet_period_and_says_when_to_look_again() -> None:
    decision = decide(POLICY, queued=5, last_queued_at=95, now=100)
    assert not decision.run
    assert decision.retry_in == 5
    assert decide(POLICY, queued=5, last_queued_at=90, now=100).run


def test_a_manual_request_skips_the_wait() -> None:
    decision = decide(POLICY, queued=1, last_queued_at=99, now=100, manual=True)
    assert decision.run
    assert decision.reason == "requested"
