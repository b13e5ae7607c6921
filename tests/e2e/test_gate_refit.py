"""Through a running daemon: once the gate passes, a linear head is published refitted with
the held-out samples (docs/model.md, Gate); ``[gate] refit = false`` publishes the judged one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for
from tests.e2e.test_update_gate import last_update

pytestmark = pytest.mark.slow  # a daemon and two updates

CONFIG = """
[model]
head = "linear"

[update]
epochs = 20
learning_rate = 0.05
batch_size = 16

[gate]
refit = {refit}

[policy]
min_queued = {min_queued}
"""


@pytest.mark.parametrize("refit", [True, False])
def test_the_published_version_learned_the_held_out_samples(
    daemon: DaemonProcess, short_tmp: Path, refit: bool
) -> None:
    config = short_tmp / "tailord.toml"
    config.write_text(CONFIG.format(refit=str(refit).lower(), min_queued=40))
    for label, vectors in clusters(np.random.default_rng(0), 20).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    daemon.start("--config", str(config))
    wait_for(lambda: daemon.version() == 1, timeout=90)
    daemon.stop()

    # A new label, 10 shots: 2 are held out to judge the candidate.
    config.write_text(CONFIG.format(refit=str(refit).lower(), min_queued=10))
    rng = np.random.default_rng(1)
    for i in range(10):
        daemon.drop("bird", f"bird-{i}.npy", npy_bytes(np.full(8, -2.0) + rng.normal(0, 0.3, 8)))
    daemon.start("--config", str(config))
    wait_for(lambda: daemon.version() == 2, timeout=90)
    gate = wait_for(lambda: last_update(daemon).get("gate"))
    assert isinstance(gate, dict)
    assert gate["promote"] is True
    assert gate["holdout_samples"] == 2
    reason = str(gate["reason"])
    assert ("published refitted on all 10 new samples" in reason) is refit, reason
    with daemon.client() as client:
        answer = client.predict([[-2.0] * 8])
    assert answer.predictions[0].label == "bird"
