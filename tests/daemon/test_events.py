"""Typed events: the SSE bytes stay as they were, clients decode them, no torch to do so."""

from __future__ import annotations

import json
import subprocess
import sys

import msgspec
import pytest

from tailord.daemon.api import bodies
from tailord.daemon.events import (
    EVENT_TYPES,
    EventBus,
    EventData,
    SampleQueued,
    SampleRejected,
    SamplesForgotten,
    UpdateBegan,
    UpdateExpired,
    UpdateFinished,
    UpdateJudged,
    UpdateProgressed,
    UpdateResumed,
    VersionChanged,
    VersionLoadFailed,
    decode_event,
)
from tailord.storage.states import UpdateState

GATE = bodies.Gate(True, "better", 3, 1.0, 0.5, 10, 0.9, 0.9, "accuracy", True)

# Each event as its publisher sent it before the structs: ``publish(type, **data)``.
CASES: list[tuple[EventData, dict[str, object]]] = [
    (
        SamplesForgotten(2, [1, 3], 4, 0.5),
        {"samples": 2, "versions_removed": [1, 3], "version": 4, "seconds": 0.5},
    ),
    (SampleQueued(3), {"count": 3}),
    (
        SampleRejected("a.npy", "cat/a.npy", "not a vector"),
        {"name": "a.npy", "source": "cat/a.npy", "reason": "not a vector"},
    ),
    (
        UpdateBegan(4, 2, "requested", 10),
        {"update": 4, "base_version": 2, "reason": "requested", "epochs": 10},
    ),
    (
        UpdateProgressed(4, "epoch", 2, 8, 1e-05, 1234.5, 0.75),
        {
            "update": 4,
            "kind": "epoch",
            "epoch": 2,
            "batch": 8,
            "loss": 1e-05,
            "samples_per_second": 1234.5,
            "accuracy": 0.75,
        },
    ),
    (
        UpdateJudged(4, True, GATE),
        {
            "update": 4,
            "promote": True,
            "gate": {
                "promote": True,
                "reason": "better",
                "holdout_samples": 3,
                "holdout_candidate": 1.0,
                "holdout_current": 0.5,
                "canary_samples": 10,
                "canary_candidate": 0.9,
                "canary_current": 0.9,
                "metric": "accuracy",
                "enabled": True,
            },
        },
    ),
    (
        UpdateFinished(4, UpdateState.FAILED, None, "gate: worse é"),
        {"update": 4, "state": "failed", "version": None, "error": "gate: worse é"},
    ),
    (
        UpdateExpired(5, "expired at epoch 4/10: machine busy; resumes when idle"),
        {"update": 5, "reason": "expired at epoch 4/10: machine busy; resumes when idle"},
    ),
    (UpdateResumed(6, 5), {"update": 6, "resumed_from": 5}),
    (VersionChanged(version=3, parent=2), {"version": 3, "parent": 2}),
    (
        VersionChanged(version=1, previous=3, reason="rollback"),
        {"version": 1, "previous": 3, "reason": "rollback"},
    ),
    (
        VersionChanged(version=5, parent=3, reason="import"),
        {"version": 5, "parent": 3, "reason": "import"},
    ),
    (
        VersionLoadFailed(5, 3, "sha256 mismatch"),
        {"version": 5, "serving": 3, "error": "sha256 mismatch"},
    ),
]


@pytest.mark.parametrize(("data", "old"), CASES, ids=lambda c: getattr(c, "type", ""))
def test_the_sse_bytes_are_what_they_were(data: EventData, old: dict[str, object]) -> None:
    event = EventBus().publish(data)
    before = json.dumps(
        {"id": event.id, "type": data.type, "time": event.time, "data": old},
        separators=(",", ":"),
        default=str,
    )
    assert event.to_sse() == f"id: 1\nevent: {data.type}\ndata: {before}\n\n".encode()
    line = event.to_sse().decode().splitlines()[2].removeprefix("data: ")
    assert decode_event(line) == event  # and a client gets the struct back
    # The envelope on the wire is the API's one definition of it.
    assert msgspec.json.decode(line, type=bodies.Event) == event.envelope()
    assert event.envelope().data == old


def test_every_type_is_covered_and_unknown_types_are_skipped() -> None:
    assert {data.type for data, _ in CASES} == set(EVENT_TYPES)
    assert decode_event('{"id":1,"type":"later.thing","time":1.0,"data":{}}') is None


def test_events_decode_without_torch_or_sqlalchemy() -> None:
    code = (
        "import sys; from tailord.daemon.events import decode_event; "
        'assert decode_event(\'{"id":1,"type":"sample.queued","time":1.0,'
        '"data":{"count":2}}\') is not None; '
        "print(sorted(m for m in ('torch', 'sqlalchemy', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
