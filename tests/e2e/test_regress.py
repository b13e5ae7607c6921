"""A task = "regress" daemon end to end: numeric-target samples in, values out, and a gate
that keeps a version trained on deliberately wrong targets from becoming current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from tailord.daemon.api.openapi import openapi_document
from tailord.daemon.ctl.client import Client, ClientError
from tests.conftest import DaemonProcess, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast

CONFIG = """
[model]
task = "regress"
head = "linear"

[update]
epochs = 40
learning_rate = 0.05
batch_size = 16

[gate]
holdout = 0.2
max_regression = 0.05

[policy]
min_queued = {min_queued}  # every dropped sample in one update
"""
W = np.array([1.0, -2.0, 0.5, 3.0])


def problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """y = W.x + 10 over 4 standard normal inputs."""
    x = np.random.default_rng(seed).normal(0, 1, (n, 4)).astype(np.float32)
    return x, x.astype(np.float64) @ W + 10.0


def last_update(daemon: DaemonProcess) -> dict[str, object]:
    try:
        with daemon.client() as client:
            return dict(client.request("GET", "/v1/status")["last_update"] or {})
    except ClientError:
        return {}  # /v1/status can fail for a moment right after start-up; polls retry


def _predict(client: Client, inputs: np.ndarray) -> Any:
    return client.request("POST", "/v1/predict", json.dumps({"inputs": inputs.tolist()}).encode())


def test_regress_daemon_learns_numbers_and_its_gate_refuses_wrong_ones(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    config = short_tmp / "tailord.toml"
    config.write_text(CONFIG.format(min_queued=100))
    x, y = problem(100, seed=0)
    for i in range(50):  # half as files under a folder named by the target ...
        daemon.drop(repr(float(y[i])), f"{i}.npy", npy_bytes(x[i]))
    lines = [json.dumps({"target": float(y[i]), "vector": x[i].tolist()}) for i in range(50, 100)]
    lines.append(json.dumps({"target": "high", "vector": x[0].tolist()}))  # ... half as lines
    (daemon.inbox / "batch.jsonl").write_text("\n".join(lines) + "\n")
    daemon.start("--config", str(config))
    wait_for(lambda: daemon.version() == 1, timeout=120)
    # The update's row is committed with its version, before the version is served.
    with daemon.client() as client:
        last = client.status().last_update
        assert last is not None
        assert last.state == "succeeded"
    reason = (daemon.inbox / ".rejected" / "batch.jsonl.reason").read_text()
    assert "line 51: \"target\" is the string 'high', not a number" in reason

    unseen, truth = problem(20, seed=1)
    with daemon.client() as client:
        answer = _predict(client, unseen)  # the wire format, checked against the schema
        version = client.version()
        status = client.status()
    document = openapi_document()  # the schema's $refs point into its components
    components = document["components"]
    schema = {**components["schemas"]["Predictions"], "components": components}
    Draft202012Validator(schema).validate(answer)
    estimates = np.array([p["value"] for p in answer["predictions"]])
    assert set(answer["predictions"][0]) == {"value"}
    mse = float(np.mean((estimates - truth) ** 2))
    assert mse < 0.05 * float(np.var(truth)), (mse, np.var(truth))
    assert version.labels == []
    learned = status.samples["learned"]
    assert len(learned) == 100  # listed by target
    assert repr(float(y[3])) in learned
    assert status.last_update is not None
    assert status.last_update.gate is not None
    assert status.last_update.gate.promote is True
    daemon.stop()

    # Every target negated: a candidate trained on them forgets the canary samples.
    config.write_text(CONFIG.format(min_queued=60))
    wrong_x, wrong_y = problem(60, seed=2)
    for i in range(60):
        daemon.drop(repr(float(-wrong_y[i])), f"w{i}.npy", npy_bytes(wrong_x[i]))
    daemon.start("--config", str(config))
    wait_for(lambda: last_update(daemon).get("state") == "rejected", timeout=120)
    gate = last_update(daemon)["gate"]
    assert isinstance(gate, dict)
    assert gate["metric"] == "mse"
    assert gate["promote"] is False
    assert "canary MSE rose from" in gate["reason"]
    assert gate["holdout_samples"] == 12
    assert gate["canary_samples"] == 20
    assert daemon.version() == 1
    with daemon.client() as client:
        assert _predict(client, unseen)["predictions"] == answer["predictions"]
    daemon.stop()
