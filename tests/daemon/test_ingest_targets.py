"""A regress model's inbox: numeric targets from folder names and "target" lines."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from tailord.trainer.errors import DecodeError
from tailord.trainer.targets import folder_target, json_target, target_text
from tests.conftest import npy_bytes, wait_for
from tests.daemon.conftest import Inbox


def f32(values: list[float]) -> bytes:
    return np.array(values, dtype="<f4").tobytes()


def test_targets_have_one_canonical_text() -> None:
    assert folder_target("3.250") == folder_target("+3.25e0") == target_text(3.25) == "3.25"
    assert folder_target("3") == "3.0"
    assert folder_target("-0") == "0.0"  # -0.0 and 0.0 are one target
    assert json_target({"target": 7}) == "7.0"
    assert json_target({"target": -1.5e-3}) == "-0.0015"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"target": True}, '"target" is true, not a number'),
        ({"target": "3.5"}, "\"target\" is the string '3.5', not a number"),
        ({"target": None}, '"target" is null, not a number'),
        ({"target": [1]}, '"target" is a list, not a number'),
        ({"target": 1e39}, "not a finite float32 number"),
        ({"label": "cat"}, 'no "target" number (a "label" is for task = "classify")'),
    ],
)
def test_bad_json_targets_say_why(record: dict[str, object], reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        json_target(record)
    assert reason in str(caught.value)


@pytest.mark.parametrize("name", ["nan", "inf", "-Infinity", "1_000", " 3", "0x10", "1e39", "cat"])
def test_a_folder_that_is_not_a_finite_number_is_refused(name: str) -> None:
    with pytest.raises(DecodeError, match=r"INBOX/3\.25/|finite float32"):
        folder_target(name)


def test_regress_inbox_takes_numbers_and_rejects_the_rest_with_reasons(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector", task="regress")
    lines = [
        b'{"target": 1.5, "vector": [1, 2]}',
        b'{"target": true, "vector": [3, 4]}',
        b'{"target": NaN, "vector": [5, 6]}',
        b'{"target": "2", "vector": [7, 8]}',
        b'{"label": "a", "vector": [9, 10]}',
        b'{"target": -2, "vector": [11, 12]}',
    ]
    box.write("batch.jsonl", b"\n".join(lines) + b"\n")
    box.write("3.250/a.npy", npy_bytes(np.array([0.5, 0.5], dtype=np.float32)))
    box.write("warm/b.npy", npy_bytes(np.array([0.1, 0.2], dtype=np.float32)))
    reason = box.reason("batch.jsonl")
    assert "4 of 6 lines refused" in reason
    assert 'line 2: "target" is true, not a number' in reason
    assert "line 3: the file is not valid UTF-8 JSON" in reason  # NaN is not JSON
    assert "line 4: \"target\" is the string '2', not a number" in reason
    assert 'line 5: the line has no "target" number' in reason
    folder_reason = box.reason("b.npy")
    assert "folder 'warm' is not a number" in folder_reason
    assert "INBOX/3.25/" in folder_reason
    wait_for(lambda: box.count() == 3, timeout=20)
    stored = {row[3]: row[:3] for row in box.samples()}
    assert stored == {
        "batch.jsonl:1": ("1.5", "vector", f32([1, 2])),
        "batch.jsonl:6": ("-2.0", "vector", f32([11, 12])),
        "3.250/a.npy": ("3.25", "vector", f32([0.5, 0.5])),
    }
    kept = (box.rejected / "batch.jsonl").read_bytes().splitlines()
    assert kept == lines[1:5]


def test_classify_inbox_is_unchanged_by_targets(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector")
    box.write("b.jsonl", json.dumps({"target": 1.5, "vector": [1, 2]}).encode() + b"\n")
    box.write("3.25/a.json", b"[1, 2]")
    assert 'line 1: the line has no "label" string' in box.reason("b.jsonl")
    wait_for(lambda: box.count() == 1, timeout=20)
    assert box.samples()[0][0] == "3.25"  # a folder name is a label, whatever it looks like
