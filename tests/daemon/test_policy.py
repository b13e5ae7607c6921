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


def test_failed_updates_back_off_exponentially_but_a_request_does_not_wait() -> None:
    policy = PolicyConfig(quiet_seconds=0, retry_seconds=10, max_retry_seconds=25)
    after_one = decide(policy, queued=1, last_queued_at=0, now=105, failures=1, last_failure_at=100)
    assert not after_one.run
    assert after_one.retry_in == 5
    assert "failed" in after_one.reason
    assert decide(policy, queued=1, last_queued_at=0, now=111, failures=1, last_failure_at=100).run
    after_two = decide(policy, queued=1, last_queued_at=0, now=111, failures=2, last_failure_at=100)
    assert after_two.retry_in == 9  # 20 s after the second failure
    capped = decide(policy, queued=1, last_queued_at=0, now=101, failures=9, last_failure_at=100)
    assert capped.retry_in == 24  # at most max_retry_seconds
    asked = decide(
        policy, queued=1, last_queued_at=0, now=101, failures=9, last_failure_at=100, manual=True
    )
    assert asked.run
