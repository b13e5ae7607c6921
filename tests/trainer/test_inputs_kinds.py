"""The decode API for every input kind: files, JSON records and .jsonl lines."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from tailord.trainer.errors import DecodeError
from tailord.trainer.inputs import Decoded, Limits, decode_line, decode_record, decode_sample
from tailord.trainer.vectors import decode_vector, vector_to_bytes


def png(size: tuple[int, int] = (4, 3)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "vector",
    [
        [1, 2, 3],
        [0.1, -2.5, 1e-30, -0.0, 1e-300],
        [16777217, 2**53 + 1, -(2**62), 2**70],
        [3.4e38, -1e-45],
        [3.4028235e38, -3.4028235e38],  # above float32's max, but it rounds to it
    ],
)
def test_jsonl_fast_path_gives_the_checked_paths_bytes(vector: list[float]) -> None:
    line = json.dumps({"label": "a", "vector": vector}).encode()
    label, decoded = decode_line(line, "vector")
    expected = vector_to_bytes(decode_vector(json.dumps(vector).encode(), ".json"))
    assert (label, decoded) == ("a", Decoded("vector", expected))
    assert decode_sample(json.dumps(vector).encode(), ".json", "vector").payload == expected


@pytest.mark.parametrize("value", [3.4028236e38, -3.5e38, 2**128, 1e300])
def test_jsonl_fast_path_refuses_what_rounds_beyond_float32(value: float) -> None:
    line = json.dumps({"label": "a", "vector": [0.5, value]}).encode()
    with pytest.raises(DecodeError, match=r"element 1 .* not a finite float32"):
        decode_line(line, "vector")


@pytest.mark.parametrize(
    "line",
    [
        # No "u" nor "s" byte: the quick look for booleans says none.
        b'{"label": "a", "vector": [0, 1, 0.5, -1e-05, 1E3]}',
        # Labels that make the quick look search for the literals, once with a hit.
        b'{"label": "cats", "vector": [0, 1, 2]}',
        b'{"label": "true", "vector": [1, 0]}',
        b'{"label": "a", "vector": [1, 2], "note": "false"}',
        # Just above float32's largest: the checked path rounds it to that largest value.
        b'{"label": "a", "vector": [3.4028235e38, -3.4028235e38]}',
        b'{"label": "a", "vector": [18446744073709551615, -9223372036854775808]}',
    ],
)
def test_every_well_formed_line_gets_the_checked_paths_bytes(line: bytes) -> None:
    vector = json.loads(line)["vector"]
    expected = vector_to_bytes(decode_vector(json.dumps(vector).encode(), ".json"))
    assert decode_line(line, "vector") == (json.loads(line)["label"], Decoded("vector", expected))


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b'{"label": "a", "vector": [1, true]}', "element 1 of the JSON list is true"),
        (b'{"label": "a", "vector": [false, 1]}', "element 0 of the JSON list is false"),
        (b'{"label": "a", "vector": [1, {"x": 1}]}', "element 1 of the JSON list is"),
        (b'{"label": "a", "vector": 3}', "holds a int, not a list"),
        (b'{"label": "a", "vector": [1, "2"]}', 'element 1 of the JSON list is "2"'),
        (b'{"label": "a", "vector": [[1], [2]]}', "element 0 of the JSON list is \\[1\\]"),
        (b'{"label": "a", "vector": [1, null]}', "element 1 of the JSON list is null"),
        (b'{"label": "a", "vector": [1e39]}', "not a finite float32"),
        (b'{"label": "a", "vector": []}', "no values"),
        (b'{"label": "a", "vector": [1], "text": "x"}', "vector and text"),
        (b'{"label": 3, "vector": [1]}', 'no "label" string'),
        (b"[1, 2]", "not a JSON object"),
        (b'{"label": "a"}', "none of"),
    ],
)
def test_bad_jsonl_lines(line: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_line(line, "vector")


def test_text_and_image_records() -> None:
    assert decode_record({"text": "e\u0301"}, "text") == Decoded("text", "\u00e9".encode())
    image = png()
    record = {"image": base64.b64encode(image).decode()}
    assert decode_record(record, "image") == Decoded("image", image)
    with pytest.raises(DecodeError, match="not valid base64"):
        decode_record({"image": "***"}, "image")
    with pytest.raises(DecodeError, match='"text" holds a int'):
        decode_record({"text": 3}, "text")


def test_images_are_checked_and_kept_byte_for_byte() -> None:
    image = png()
    assert decode_sample(image, ".png", "image") == Decoded("image", image)
    with pytest.raises(DecodeError, match="cannot be decoded"):
        decode_sample(image[:-20], ".png", "image")
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="BMP")
    with pytest.raises(DecodeError, match="not a PNG or JPEG"):
        decode_sample(buffer.getvalue(), ".png", "image")
    with pytest.raises(DecodeError, match="12 pixels, over the cap of 11"):
        decode_sample(image, ".png", "image", Limits(max_pixels=11))


def test_text_limits_and_wrong_kind() -> None:
    with pytest.raises(DecodeError, match="more than the limit of 3"):
        decode_sample(b"abcd", ".txt", "text", Limits(max_text_chars=3))
    with pytest.raises(DecodeError, match="text sample but the model takes image inputs"):
        decode_sample(b"abcd", ".txt", "image")
    with pytest.raises(DecodeError, match="input kind 'audio' is unknown"):
        decode_sample(b"abcd", ".txt", "audio")
