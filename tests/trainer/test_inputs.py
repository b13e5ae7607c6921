from __future__ import annotations

import io
import json
import pickle
import time

import numpy as np
import pytest

from tailord.trainer.errors import DecodeError
from tailord.trainer.vectors import (
    MAX_VALUES,
    VECTOR_SUFFIXES,
    decode_vector,
    vector_from_bytes,
    vector_to_bytes,
)


def npy(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_header(header: str) -> bytes:
    """A version 1.0 .npy header, padded as numpy pads it, with no data after it."""
    body = header.encode("latin1")
    padding = 64 - (10 + len(body) + 1) % 64
    body += b" " * padding + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def assert_usable(v: np.ndarray, expected: list[float]) -> None:
    assert v.dtype == np.float32
    assert v.ndim == 1
    assert v.flags.c_contiguous
    assert v.tolist() == expected


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<i8", "u1"])
def test_npy_vector_of_any_number_type_decodes_to_float32(dtype: str) -> None:
    v = decode_vector(npy(np.array([1, 2, 3], dtype=dtype)), ".npy")
    assert_usable(v, [1.0, 2.0, 3.0])


def test_suffix_is_case_insensitive() -> None:
    assert_usable(decode_vector(b"[1, 2.5]", ".JSON"), [1.0, 2.5])


def test_json_list_decodes() -> None:
    assert_usable(decode_vector(b"[1, -2.5, 3e2]", ".json"), [1.0, -2.5, 300.0])


def test_json_object_with_vector_decodes_and_ignores_other_keys() -> None:
    data = json.dumps({"label": "cat", "vector": [0.5, 1]}).encode()
    assert_usable(decode_vector(data, ".json"), [0.5, 1.0])


def test_pickled_npy_is_refused_without_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("decode_vector must never unpickle")

    data = npy(np.array([{"a": 1}, 2], dtype=object), allow_pickle=True)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    with pytest.raises(DecodeError, match="not a number type"):
        decode_vector(data, ".npy")


def test_npy_header_claiming_huge_shape_is_refused_before_reading() -> None:
    data = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }")
    started = time.perf_counter()
    with pytest.raises(DecodeError, match=r"1000000000000 values, more than the limit of 1000000"):
        decode_vector(data, ".npy")
    assert time.perf_counter() - started < 1.0


def test_max_values_is_adjustable() -> None:
    with pytest.raises(DecodeError, match="more than the limit of 2"):
        decode_vector(b"[1, 2, 3]", ".json", max_values=2)
    assert MAX_VALUES == 1_000_000


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (npy(np.zeros((2, 3), dtype=np.float32)), r"shape \(2, 3\), not a 1-D vector"),
        (npy(np.array([1.0, np.nan])), "element 1 is nan, not a finite float32"),
        (npy(np.array([1e300])), "not a finite float32"),
        (npy(np.array([True, False])), "not a number type"),
        (npy(np.array(["x"])), "not a number type"),
        (npy(np.array([1 + 2j])), "not a number type"),
        (npy(np.zeros(0, dtype=np.float32)), "no values"),
        (npy(np.arange(100, dtype=np.float32))[:-8], "write the whole file"),
        (b"\x93NUMPY\x01\x00\x20\x00{'descr': nonsense", "header cannot be read"),
        (b"not an npy file at all", "header cannot be read"),
    ],
)
def test_bad_npy_is_refused(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match) as raised:
        decode_vector(data, ".npy")
    assert "\n" not in str(raised.value)
    assert ";" in str(raised.value)  # what is wrong; what to do


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'"text"', "holds a str, not a list"),
        (b"{}", 'no "vector" key'),
        (b'{"vector": {"x": 1}}', "holds a dict, not a list"),
        (b"[1, [2]]", "element 1 of the JSON list is \\[2\\], not a number"),
        (b"[1, true]", "element 1 of the JSON list is true, not a number"),
        (b"[false]", "element 0 of the JSON list is false"),
        (b'[1, "2"]', "element 1"),
        (b"[1, null]", "element 1"),
        (b"[]", "no values"),
        (b"[NaN]", "not valid UTF-8 JSON"),
        (b"[Infinity]", "not valid UTF-8 JSON"),
        (b"[1e39]", "not a finite float32"),
        (b"[1, 2", "not valid UTF-8 JSON"),
        (b"\xff\xfe\x00", "not valid UTF-8 JSON"),
    ],
)
def test_bad_json_is_refused(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match) as raised:
        decode_vector(data, ".json")
    assert "\n" not in str(raised.value)
    assert ";" in str(raised.value)


@pytest.mark.parametrize("wrap", [False, True])
def test_deeply_nested_json_is_refused_quickly(wrap: bool) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    data = b'{"vector": ' + nested + b"}" if wrap else nested
    started = time.perf_counter()
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_vector(data, ".json")
    assert time.perf_counter() - started < 1.0


def test_empty_file_is_refused() -> None:
    with pytest.raises(DecodeError, match="the file is empty; write the whole sample"):
        decode_vector(b"", ".npy")


@pytest.mark.parametrize("suffix", [".txt", ".pkl", "", "npy"])
def test_unknown_suffix_is_refused_with_the_accepted_list(suffix: str) -> None:
    with pytest.raises(DecodeError, match=r"\.json, \.npy"):
        decode_vector(b"[1]", suffix)
    assert {".json", ".npy"} == VECTOR_SUFFIXES


def test_stored_payload_round_trips() -> None:
    v = decode_vector(b"[1.5, -2, 3e-3]", ".json")
    data = vector_to_bytes(v)
    assert data == np.array([1.5, -2, 3e-3], dtype="<f4").tobytes()
    back = vector_from_bytes(data)
    assert back.flags.writeable
    assert np.array_equal(back, v)


def test_stored_payload_of_wrong_length_is_refused() -> None:
    with pytest.raises(DecodeError, match="not a multiple of 4"):
        vector_from_bytes(b"\x00" * 6)
