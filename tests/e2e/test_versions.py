"""Version history through the real daemon: rollback, pin, import-base, corruption, base file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tailord.daemon.api.bodies import Status
from tailord.daemon.ctl.client import ClientError
from tailord.daemon.ctl.main import main as tailorctl
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for
from tests.e2e.version_checks import check_current

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast


def _learn(daemon: DaemonProcess) -> int:
    """Eight samples learned by one or more updates; returns the version that has them all."""
    for label, vectors in clusters(np.random.default_rng(5), 4).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    wait_for(lambda: _status(daemon).queued == 0 and daemon.version() >= 1, timeout=90)
    wait_for(lambda: _status(daemon).state == "idle", timeout=90)
    return daemon.version()


def _status(daemon: DaemonProcess) -> Status:
    with daemon.client() as client:
        return client.status()


def _model_file(path: Path, labels: tuple[str, str] = ("north", "south")) -> Path:
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.normal(3, 0.1, (4, 8)), rng.normal(-3, 0.1, (4, 8))])
    y = [labels[0]] * 4 + [labels[1]] * 4
    model = run_update(Model.base(ModelSpec()), x.astype(np.float32), y, x[:0], [], UpdateParams())
    path.write_bytes(model.to_bytes())
    return path


def _ctl(daemon: DaemonProcess, capsys: pytest.CaptureFixture[str], *args: str) -> object:
    code = tailorctl(["--socket", str(daemon.socket), "--json", *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_rollback_pin_and_import_base(
    daemon: DaemonProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.start()
    v = _learn(daemon)
    model = _model_file(daemon.root / "pretrained.safetensors")
    assert _ctl(daemon, capsys, "import-base", str(model)) == {"version": v + 1, "parent": v}
    with daemon.client() as client:
        answer = client.predict([[3.0] * 8, [-3.0] * 8])
    assert answer.version == v + 1
    assert [p.label for p in answer.predictions] == ["north", "south"]

    assert _ctl(daemon, capsys, "rollback") == {"version": v, "previous": v + 1, "changed": True}
    assert daemon.version() == v
    assert check_current(daemon.data_dir) == v
    assert _ctl(daemon, capsys, "rollback", str(v + 1))["version"] == v + 1  # type: ignore[index]
    assert _ctl(daemon, capsys, "pin", "1") == {"version": 1, "pinned": True}
    assert _ctl(daemon, capsys, "unpin", "1") == {"version": 1, "pinned": False}

    assert tailorctl(["--socket", str(daemon.socket), "rollback", "99"]) == 1
    assert "no version 99" in capsys.readouterr().err
    pickled = daemon.root / "evil.safetensors"
    pickled.write_bytes(b"\x80\x04\x95pickle")
    assert tailorctl(["--socket", str(daemon.socket), "import-base", str(pickled)]) == 1
    assert "not a usable tailord model" in capsys.readouterr().err
    with daemon.client() as client, pytest.raises(ClientError) as info:
        client.request("POST", "/v1/rollback", b'{"version": "one"}')
    assert info.value.status == 422
    assert daemon.version() == v + 1

    assert daemon.stop() == 0
    with sqlite3.connect(daemon.data_dir / "tailord.db") as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM version_events ORDER BY id")]
    assert kinds == ["base"] + ["published"] * v + [
        "import",
        "rollback",
        "rollback",
        "pin",
        "unpin",
    ]


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(daemon: DaemonProcess) -> None:
    daemon.start("--quiet-seconds", "3600")
    model = _model_file(daemon.root / "m.safetensors")
    with daemon.client() as client:
        client.request("POST", "/v1/import-base", model.read_bytes(), "application/octet-stream")
        weights = daemon.data_dir / "versions" / "0" / "weights.safetensors"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
        with pytest.raises(ClientError) as info:
            client.request("POST", "/v1/rollback", b'{"version": 0}')
        assert info.value.status == 409
        assert info.value.code == "load_failed"
        assert "sha256" in info.value.message
        assert client.version().version == 1
        load_error = client.status().load_error
        assert load_error is not None
        assert load_error.version == 0
    assert check_current(daemon.data_dir) == 1


def test_a_flipped_byte_in_current_falls_back_to_the_previous_version(
    daemon: DaemonProcess,
) -> None:
    daemon.start()
    v = _learn(daemon)
    assert daemon.stop() == 0
    with sqlite3.connect(daemon.data_dir / "tailord.db") as conn:
        lost = conn.execute("SELECT count(*) FROM samples WHERE learned_in = ?", (v,)).fetchone()
    weights = daemon.data_dir / "versions" / str(v) / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x10
    weights.write_bytes(bytes(data))

    daemon.start("--quiet-seconds", "3600")
    assert daemon.version() == v - 1  # its parent
    assert f"FALLING BACK to version {v - 1}" in daemon.log.read_text()
    assert _status(daemon).queued == lost[0] > 0  # what version v learned is queued again
    assert daemon.stop() == 0
    assert check_current(daemon.data_dir) == v - 1


def test_a_configured_base_file_becomes_version_0(daemon: DaemonProcess) -> None:
    model = _model_file(daemon.root / "base.safetensors", ("east", "west"))
    config = daemon.root / "tailord.toml"
    config.write_text(f'[versions]\nbase = "{model}"\n')
    daemon.start("--config", str(config))
    with daemon.client() as client:
        answer = client.predict([[-3.0] * 8])
    assert answer.version == 0
    assert [p.label for p in answer.predictions] == ["west"]
