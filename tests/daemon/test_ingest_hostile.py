"""Hostile inbox entries are refused with a one-line reason, and ingest goes on."""

from __future__ import annotations

import io
import json
import os
import pickle
import time
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from tests.conftest import npy_bytes, wait_for
from tests.daemon.conftest import Inbox


def npy_header(header: str) -> bytes:
    body = header.encode("latin1")
    body += b" " * (64 - (10 + len(body) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def pickled_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def still_ingests(box: Inbox, name: str = "after.json") -> None:
    before = box.count()
    box.write(f"ok/{name}", json.dumps([float(time.monotonic_ns()), 1.0]).encode())
    wait_for(lambda: box.count() == before + 1, timeout=20)
    assert box.alive()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("pickled.npy", pickled_npy(), "not a number type"),
        ("object.npy", b"", "not a number type"),  # filled in below
        (
            "huge.npy",
            npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"),
            "1000000000000 values, more than the limit",
        ),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("empty.npy", b"", "the file is empty"),
        ("empty.json", b"", "the file is empty"),
    ],
)
def test_bad_vector_files(
    make_inbox: Callable[..., Inbox], name: str, data: bytes, match: str
) -> None:
    if name == "object.npy":
        buffer = io.BytesIO()
        np.save(buffer, np.array([1, "a", None], dtype=object), allow_pickle=True)
        data = buffer.getvalue()
    box = make_inbox("vector")
    box.write(f"cat/{name}", data)
    assert match in box.reason(name)
    assert (box.rejected / name).read_bytes() == data
    source = f"cat/{name}"
    # Recorded in the database too, in the transaction that follows the move.
    wait_for(
        lambda: (
            box.rows("SELECT reason LIKE ? FROM rejections WHERE source = ?", f"%{match}%", source)
            == [(1,)]
        ),
        timeout=10,
    )
    still_ingests(box)


def test_pickled_npy_is_never_unpickled(
    make_inbox: Callable[..., Inbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the ingestor must never unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    box = make_inbox("vector")
    box.write("cat/p.npy", pickled_npy())
    assert "not a number type" in box.reason("p.npy")


def test_symlink_to_a_file_outside_is_refused_and_the_target_untouched(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector")
    outside = box.root / "secret.json"
    outside.write_bytes(b"[1, 2, 3]")
    (box.inbox / "cat").mkdir()
    os.symlink(outside, box.inbox / "cat" / "link.json")
    box.ingestor.scan_now()  # symlink() raises no close event: the rescan finds it
    assert "is a symbolic link" in box.reason("link.json")
    assert (box.rejected / "link.json").is_symlink()
    assert outside.read_bytes() == b"[1, 2, 3]"
    assert box.count() == 0
    still_ingests(box)


def test_symlinked_label_folder_is_refused(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector")
    elsewhere = box.root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.json").write_bytes(b"[1, 2]")
    os.symlink(elsewhere, box.inbox / "cat")
    box.ingestor.pending.add(box.inbox / "cat" / "a.json")
    # Refused as a link whether its creation or the file inside it is looked at first.
    assert "symbolic link" in box.reason("cat")
    assert (box.rejected / "cat").is_symlink()
    assert (elsewhere / "a.json").read_bytes() == b"[1, 2]"
    assert box.count() == 0


def test_hard_link_is_refused(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector")
    outside = box.root / "original.json"
    outside.write_bytes(b"[1, 2, 3]")
    (box.inbox / "cat").mkdir()
    os.link(outside, box.inbox / "cat" / "hard.json")
    assert "has 2 hard links" in box.reason("hard.json")
    assert outside.read_bytes() == b"[1, 2, 3]"
    assert box.count() == 0
    still_ingests(box)


def test_fifo_is_refused_without_hanging(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector")
    (box.inbox / "cat").mkdir()
    os.mkfifo(box.inbox / "cat" / "pipe.json")
    assert "not a regular file" in box.reason("pipe.json")
    still_ingests(box)


def test_png_over_the_pixel_cap_is_refused(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("image", max_image_pixels=10_000)
    buffer = io.BytesIO()
    Image.new("L", (200, 200)).save(buffer, format="PNG")  # 40,000 pixels, tiny file
    box.write("big/bomb.png", buffer.getvalue())
    assert "200x200 = 40000 pixels, over the cap of 10000" in box.reason("bomb.png")
    small = io.BytesIO()
    Image.new("L", (50, 50)).save(small, format="PNG")
    box.write("ok/small.png", small.getvalue())
    wait_for(lambda: box.count() == 1, timeout=20)


def test_png_over_pillows_own_limit_is_an_error_not_a_warning(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("image", max_image_pixels=10**12)
    buffer = io.BytesIO()
    # A 1-bit image compresses to almost nothing; its header claims 100 megapixels,
    # over Pillow's MAX_IMAGE_PIXELS, which would only warn.
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    box.write("big/bomb.png", buffer.getvalue())
    assert "decompression bomb" in box.reason("bomb.png")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"caf\xe9", "not valid UTF-8 (byte 3 is 0xe9)"),
        (b"", "the file is empty"),
        (b"\n\n  \n", "the text is empty"),
        (b"a\x00b", "NUL character"),
    ],
)
def test_bad_text_is_refused(make_inbox: Callable[..., Inbox], data: bytes, match: str) -> None:
    box = make_inbox("text")
    box.write("note/bad.txt", data)
    assert match in box.reason("bad.txt")
    box.write("note/good.txt", b"fine words")
    wait_for(lambda: box.count() == 1, timeout=20)


def test_jsonl_line_over_the_cap(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector", max_line_bytes=1000)
    good = b'{"label": "a", "vector": [1, 2]}'
    huge = b'{"label": "a", "vector": [' + b"1, " * 5000 + b"1]}"
    box.write("b.jsonl", good + b"\n" + huge + b"\n" + b'{"label": "a", "vector": [3, 4]}')
    reason = box.reason("b.jsonl")
    assert "line 2: is over the 1000-byte line cap" in reason
    wait_for(lambda: box.count() == 2, timeout=10)


def test_files_in_the_wrong_place_are_refused_with_where_they_belong(
    make_inbox: Callable[..., Inbox],
) -> None:
    box = make_inbox("vector")
    box.write("loose.json", b"[1, 2]")
    assert "move it to INBOX/<label>/loose.json" in box.reason("loose.json")
    box.write("cat/many.jsonl", b'{"label": "cat", "vector": [1, 2]}\n')
    assert "move it to INBOX/many.jsonl" in box.reason("many.jsonl")
    box.write("cat/wrong.pkl", b"\x80\x04")
    assert "not a sample format" in box.reason("wrong.pkl")
    still_ingests(box)


def test_oversized_file_is_refused_before_reading(make_inbox: Callable[..., Inbox]) -> None:
    box = make_inbox("vector", max_file_bytes=1000)
    box.write("cat/big.npy", npy_bytes(np.zeros(1000, dtype=np.float32)))
    assert "over the 1000-byte cap" in box.reason("big.npy")
