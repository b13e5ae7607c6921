"""Vectors from untrusted bytes: a ``.npy`` file or JSON numbers, and their stored form.

A ``.npy`` header is read and checked before any of its payload, and nothing is ever
unpickled; JSON is parsed strictly. Either way a vector comes out non-empty, finite, 1-D
float32, stored as raw little-endian bytes.
"""

from __future__ import annotations

import io
import json

import numpy as np
import numpy.typing as npt
import orjson
from numpy.lib import format as npy_format

from tailord.trainer.errors import DecodeError, one_line

VECTOR_SUFFIXES: frozenset[str] = frozenset({".npy", ".json"})
MAX_VALUES = 1_000_000

# Signed/unsigned integers and floats. Booleans, complex numbers, strings, structured and
# object dtypes are not measurements and would be silently mangled by a cast to float32.
_NUMERIC_KINDS = frozenset("iuf")
_ACCEPTED = ", ".join(sorted(VECTOR_SUFFIXES))
_NUMBER_TYPES: frozenset[type] = frozenset({int, float})

Vector = npt.NDArray[np.float32]


def decode_vector(data: bytes, suffix: str, *, max_values: int = MAX_VALUES) -> Vector:
    """Return ``data`` as a non-empty, finite, 1-D, C-contiguous float32 array.

    ``suffix`` is the file name's suffix (``".npy"`` or ``".json"``, any case).
    Raises DecodeError with a one-line reason when the bytes cannot be a sample.
    """
    kind = suffix.lower()
    if kind not in VECTOR_SUFFIXES:
        raise DecodeError(
            f"the suffix {suffix!r} is not a vector format; "
            f"save the sample with one of these suffixes: {_ACCEPTED}"
        )
    if not data:
        raise DecodeError("the file is empty; write the whole sample, then move it into the inbox")
    values = _decode_npy(data, max_values) if kind == ".npy" else _decode_json(data, max_values)
    return _finish(values, max_values)


def vector_to_bytes(v: npt.NDArray[np.generic]) -> bytes:
    """Return the canonical stored payload of a vector: raw float32 little-endian bytes."""
    if v.ndim != 1:
        raise DecodeError(
            f"expected a 1-D vector, got shape {v.shape}; decode it with decode_vector first"
        )
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes) -> Vector:
    """Inverse of :func:`vector_to_bytes`; returns a writable copy in native byte order."""
    if len(data) % 4:
        raise DecodeError(
            f"a stored vector payload has {len(data)} bytes, not a multiple of 4; "
            "store vectors with vector_to_bytes"
        )
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def json_vector(document: object, max_values: int = MAX_VALUES) -> Vector:
    """Return parsed JSON (a list of numbers) as a vector, refused as :func:`decode_vector`
    refuses a ``.json`` file's list."""
    return _finish(_json_values(document, max_values), max_values)


def parse_json(data: bytes | str) -> object:
    """Parse untrusted JSON (strict: no NaN, nesting capped), with a one-line reason.

    orjson parses a line of numbers about eight times faster than the json module, which
    is most of the cost of ingesting a .jsonl batch.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc):
            raise DecodeError(
                'the JSON is nested too deeply; write a flat list of numbers or {"vector": [...]}'
            ) from exc
        raise DecodeError(
            f"the file is not valid UTF-8 JSON ({one_line(exc)}); "
            'write a list of numbers or {"vector": [...]}'
        ) from exc


def _decode_npy(data: bytes, max_values: int) -> npt.NDArray[np.generic]:
    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        # Format 3.0 differs from 2.0 only by a UTF-8 header; numeric dtypes are plain ASCII.
        if version == (1, 0):
            shape, _fortran, dtype = npy_format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except (ValueError, TypeError, OSError, EOFError) as exc:
        raise DecodeError(
            f"the .npy header cannot be read ({one_line(exc)}); save the vector with numpy.save"
        ) from exc
    if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS or dtype.shape != ():
        raise DecodeError(
            f"the .npy array has dtype {dtype.str!r}, not a number type; "
            "save a float or integer array (for example numpy.float32)"
        )
    if len(shape) != 1:
        raise DecodeError(
            f"the .npy array has shape {shape}, not a 1-D vector; "
            "save one sample per file, flattened to 1-D"
        )
    _check_count(shape[0], max_values)
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DecodeError(
            f"the .npy data cannot be read ({one_line(exc)}); "
            "write the whole file, then move it into the inbox"
        ) from exc
    if not isinstance(loaded, np.ndarray):
        raise DecodeError("the .npy file holds no array; save a single array with numpy.save")
    return loaded


def _decode_json(data: bytes, max_values: int) -> npt.NDArray[np.generic]:
    document = parse_json(data)
    if isinstance(document, dict):
        # Other keys (a label, a note) may ride along, as in a .jsonl line; only "vector" counts.
        if "vector" not in document:
            raise DecodeError(
                'the JSON object has no "vector" key; write {"vector": [...]} or a bare list'
            )
        document = document["vector"]
    return _json_values(document, max_values)


def _json_values(document: object, max_values: int) -> npt.NDArray[np.generic]:
    if not isinstance(document, list):
        raise DecodeError(
            f"the JSON holds a {type(document).__name__}, not a list; "
            'write a list of numbers or {"vector": [...]}'
        )
    _check_count(len(document), max_values)
    # bool is a subclass of int, but true/false are not measurements. One pass over the types
    # in C is the fast path; the loop only runs to name the culprit.
    if not set(map(type, document)) <= _NUMBER_TYPES:
        for index, value in enumerate(document):
            if type(value) is not int and type(value) is not float:
                raise DecodeError(
                    f"element {index} of the JSON list is {json.dumps(value)[:40]}, "
                    "not a number; write a flat list of numbers"
                )
    # orjson gives ints beyond 64 bits as floats, and refuses numbers beyond float64.
    return np.array(document, dtype=np.float64)


def _check_count(count: int, max_values: int) -> None:
    if count > max_values:
        raise DecodeError(
            f"the vector has {count} values, more than the limit of {max_values}; "
            "reduce the sample or raise the limit"
        )
    if count == 0:
        raise DecodeError("the vector has no values; write at least one number")


def _finish(values: npt.NDArray[np.generic], max_values: int) -> Vector:
    _check_count(values.size, max_values)
    # Values beyond float32's range become inf here and are refused just below.
    with np.errstate(over="ignore", invalid="ignore"):
        vector = np.ascontiguousarray(values.reshape(-1), dtype=np.float32)
    finite = np.isfinite(vector)
    if not finite.all():
        first = int(np.argmin(finite))
        raise DecodeError(
            f"element {first} is {float(values.reshape(-1)[first])!r}, not a finite float32; "
            "fix NaN, inf and out-of-range numbers before dropping the sample"
        )
    return vector
