"""``[ingest] max_labels``: an inbox writer cannot add labels without end (real inbox, real
watcher, real SQLite); samples of known labels are always taken."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.conftest import wait_for
from tests.daemon.conftest import Inbox


def test_a_label_beyond_the_cap_is_refused_with_its_reason(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector", max_labels=3)
    for i, label in enumerate(["a", "b", "c"]):
        box.write(f"{label}/{i}.json", json.dumps([float(i), 1.0]).encode())
    wait_for(lambda: box.count() == 3, timeout=20)
    box.write("d/extra.json", b"[9.0, 1.0]")
    assert "[ingest] max_labels" in box.reason("extra.json")
    lines = [{"label": label, "vector": [float(i), 2.0]} for i, label in enumerate("aexbf")]
    box.write("more.jsonl", "\n".join(json.dumps(line) for line in lines).encode() + b"\n")
    box.write("c/again.json", b"[7.0, 1.0]")  # a known label is still taken
    wait_for(lambda: box.count() == 6, timeout=20)
    labels = {row[0] for row in box.rows("SELECT DISTINCT label FROM samples")}
    assert labels == {"a", "b", "c"}
