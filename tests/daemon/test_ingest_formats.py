"""Every inbox format becomes a sample, for the model's input kind, over a real watcher."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import unicodedata
from collections.abc import Callable

import numpy as np
from PIL import Image

from tests.conftest import npy_bytes, wait_for
from tests.daemon.conftest import Inbox


def image_bytes(fmt: str, size: tuple[int, int] = (8, 6), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def f32(values: list[float]) -> bytes:
    return np.array(values, dtype="<f4").tobytes()


def test_vector_formats(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector")
    box.write("cat/a.npy", npy_bytes(np.array([1, 2, 3], dtype=np.float64)))
    box.write("cat/b.json", b"[4, 5, 6]")
    box.write("dog/c.json", json.dumps({"vector": [7, 8, 9], "note": "x"}).encode())
    lines = [
        {"label": "dog", "vector": [1.5, 2.5, 3.5]},
        {"label": "bird", "vector": [0, 0, 1]},
    ]
    box.write("batch.jsonl", b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    wait_for(lambda: box.count() == 5, timeout=20)
    stored = {row[3]: row for row in box.samples()}
    assert stored["cat/a.npy"][:3] == ("cat", "vector", f32([1, 2, 3]))
    assert stored["cat/b.json"][2] == f32([4, 5, 6])
    assert stored["dog/c.json"][:3] == ("dog", "vector", f32([7, 8, 9]))
    assert stored["batch.jsonl:1"][:3] == ("dog", "vector", f32([1.5, 2.5, 3.5]))
    assert stored["batch.jsonl:2"][:3] == ("bird", "vector", f32([0, 0, 1]))
    assert all(row[4] == "queued" for row in stored.values())
    # Acknowledged means removed; the sample id is the sha256 of the stored payload.
    wait_for(lambda: not list(box.inbox.rglob("*.*")), timeout=10)
    digests = {r[0] for r in box.rows("SELECT sha256 FROM samples")}
    assert hashlib.sha256(f32([4, 5, 6])).hexdigest() in digests
    assert sum(box.woken) == 5


def test_text_formats(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("text")
    decomposed = unicodedata.normalize("NFD", "café au lait")
    box.write("drink/a.txt", ("\ufeff" + decomposed + "\n").encode())
    box.write("drink/b.json", json.dumps({"text": "tea, hot"}).encode())
    box.write("t.jsonl", json.dumps({"label": "food", "text": "bread ✓"}).encode())
    wait_for(lambda: box.count() == 3, timeout=20)
    stored = {row[3]: row for row in box.samples()}
    # NFC, no BOM, no trailing newline: the same words are the same sample.
    assert stored["drink/a.txt"][:3] == ("drink", "text", "café au lait".encode())
    assert stored["drink/b.json"][:3] == ("drink", "text", b"tea, hot")
    assert stored["t.jsonl:1"][:3] == ("food", "text", "bread ✓".encode())
    # The same text again under another label is a relabel, not a new sample.
    box.write("snack/c.txt", "café au lait".encode())
    wait_for(lambda: box.ingestor.stats.relabeled == 1, timeout=20)
    assert box.count() == 3


def test_image_formats(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("image")
    png, jpg = image_bytes("PNG"), image_bytes("JPEG", color="blue")
    box.write("red/a.png", png)
    box.write("blue/b.jpg", jpg)
    line = {"label": "green", "image": base64.b64encode(image_bytes("PNG", color="green")).decode()}
    box.write("imgs.jsonl", json.dumps(line).encode() + b"\n")
    wait_for(lambda: box.count() == 3, timeout=20)
    stored = {row[3]: row for row in box.samples()}
    # Images are stored as the original, validated file bytes.
    assert stored["red/a.png"][:3] == ("red", "image", png)
    assert stored["blue/b.jpg"][:3] == ("blue", "image", jpg)
    assert stored["imgs.jsonl:1"][1] == "image"


def test_sample_of_the_wrong_kind_is_refused_with_a_reason(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector")
    box.write("cat/words.txt", b"hello")
    box.write("cat/pic.png", image_bytes("PNG"))
    box.write("cat/t.json", b'{"text": "hello"}')
    assert "text sample but the model takes vector inputs" in box.reason("words.txt")
    assert "image sample but the model takes vector inputs" in box.reason("pic.png")
    assert "text sample but the model takes vector inputs" in box.reason("t.json")
    box.write("cat/ok.json", b"[1, 2]")
    wait_for(lambda: box.count() == 1, timeout=20)


def test_jsonl_bad_lines_are_rejected_with_their_numbers_and_good_ones_kept(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector", max_line_bytes=200)
    lines = [
        b'{"label": "a", "vector": [1, 2]}',
        b'{"label": "a", "vector": [1, "x"]}',
        b"not json",
        b'{"label": "b", "vector": [' + b"1, " * 100 + b"1]}",  # over the 200-byte line cap
        b"",
        b'{"vector": [3, 4]}',
        b'{"label": "b", "vector": [5, 6]}',
    ]
    box.write("mixed.jsonl", b"\n".join(lines) + b"\n")
    reason = box.reason("mixed.jsonl")
    for number in (2, 3, 4, 6):
        assert f"line {number}:" in reason, reason
    assert "line 1:" not in reason
    assert "line 7:" not in reason
    assert "200-byte line cap" in reason
    assert "4 of 7 lines refused" in reason
    wait_for(lambda: box.count() == 2, timeout=10)
    assert sorted(r[3] for r in box.samples()) == ["mixed.jsonl:1", "mixed.jsonl:7"]
    wait_for(lambda: not (box.inbox / "mixed.jsonl").exists(), timeout=10)
    kept = (box.rejected / "mixed.jsonl").read_bytes().splitlines()
    assert kept == [lines[1], lines[2], lines[5]]  # the over-cap line is not kept
    assert box.rows("SELECT count(*) FROM rejections WHERE source = 'mixed.jsonl'") == [(1,)]


def test_same_content_twice_is_one_sample_and_new_label_is_a_relabel(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector")
    box.write("cat/a.json", b"[1, 2, 3]")
    wait_for(lambda: box.count() == 1, timeout=20)
    box.db.engine.dispose()
    box.rows("UPDATE samples SET state = 'learned'")  # as if an update had learned it
    box.write("cat/again.npy", npy_bytes(np.array([1, 2, 3], dtype=np.float32)))
    wait_for(lambda: box.ingestor.stats.duplicates == 1, timeout=20)
    wait_for(lambda: not (box.inbox / "cat" / "again.npy").exists(), timeout=10)
    assert box.rows("SELECT label, state, previous_label FROM samples") == [
        ("cat", "learned", None)
    ]
    box.write("dog/b.json", b"[1.0, 2.0, 3.0]")
    wait_for(lambda: box.ingestor.stats.relabeled == 1, timeout=20)
    [(label, state, previous, at)] = box.rows(
        "SELECT label, state, previous_label, relabeled_at FROM samples"
    )
    assert (label, state, previous) == ("dog", "queued", "cat")
    assert at is not None
