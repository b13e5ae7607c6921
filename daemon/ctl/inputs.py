"""The files ``tailorctl predict`` sends: every sample kind the inbox takes, without numpy.

One file goes as the raw request body with its media type, so the daemon decodes it with the
very decoder the inbox uses (and says so plainly when the model takes another kind). Several
files go as one JSON request, ``{"inputs": [...]}``: a vector as a list of numbers, a text as
a string, an image as ``{"image": "<base64>"}``; the daemon checks each one.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from tailord.daemon.errors import TailordError

# The media type that stands for each suffix in a raw body (the daemon's RAW_TYPES).
RAW_TYPES = {
    ".npy": "application/x-npy",
    ".txt": "text/plain",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
SUFFIXES = (".npy", ".json", ".txt", ".png", ".jpg", ".jpeg")
_NPY_MAGIC = b"\x93NUMPY"
# numpy's type codes (without the byte order) and struct's, for the number types numpy saves.
_NPY_CODES = {
    "f2": "e", "f4": "f", "f8": "d",
    "i1": "b", "i2": "h", "i4": "i", "i8": "q",
    "u1": "B", "u2": "H", "u4": "I", "u8": "Q",
}  # fmt: skip

JsonInput = list[float] | str | dict[str, str]


class InputError(TailordError):
    """A file tailorctl cannot send; give .npy or .json vectors, .txt texts, .png or .jpg images."""


@dataclass(frozen=True)
class Request:
    """One ``POST /v1/predict``: a raw file body with its media type, or JSON inputs."""

    raw: bytes | None = None
    content_type: str = "application/json"
    inputs: list[JsonInput] = field(default_factory=list)


def predict_request(paths: list[Path]) -> Request:
    """The request that asks for a prediction of each file in ``paths``, in order."""
    for path in paths:
        if path.suffix.lower() not in SUFFIXES:
            raise InputError(
                f"{path}: cannot predict from a {path.suffix or 'suffix-less'} file; "
                "give .npy or .json vectors, .txt texts, .png or .jpg images"
            )
    if len(paths) == 1 and paths[0].suffix.lower() in RAW_TYPES:
        return Request(raw=_read(paths[0]), content_type=RAW_TYPES[paths[0].suffix.lower()])
    return Request(inputs=[json_input(path, _read(path)) for path in paths])


def json_input(path: Path, data: bytes) -> JsonInput:
    """The file's sample as one item of ``{"inputs": [...]}``."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return npy_vector(path, data)
    if suffix == ".json":
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise InputError(
                f'{path}: not valid JSON ({exc}); write a list of numbers or {{"vector": [...]}}'
            ) from exc
        return _json_document(path, document)
    if suffix == ".txt":
        try:
            return data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from exc
    return {"image": base64.b64encode(data).decode("ascii")}


def _json_document(path: Path, document: object) -> JsonInput:
    """A ``.json`` sample as the inbox reads it: a list of numbers, or an object with one of
    ``vector``, ``text``, ``image`` (other keys, such as a label, ride along unread)."""
    if isinstance(document, dict):
        present = [key for key in ("vector", "text", "image") if key in document]
        if len(present) == 1 and present[0] != "vector":
            value = document[present[0]]
            if isinstance(value, str):
                return value if present[0] == "text" else {"image": value}
        elif present == ["vector"]:
            document = document["vector"]
    if isinstance(document, list) and all(_is_number(v) for v in document):
        return [float(v) for v in document]
    raise InputError(
        f"{path}: the JSON holds no sample; write a list of numbers or an object with one "
        'of "vector" (numbers), "text" (a string) or "image" (base64)'
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def npy_vector(path: Path, data: bytes) -> list[float]:
    """A 1-D numeric ``.npy`` array as numbers: the header is a Python dict literal, the
    data one packed run of numbers, so the standard library reads it in microseconds
    (numpy alone would take longer to import than tailorctl takes to run)."""
    fix = "save one 1-D number array with numpy.save"
    if data[:6] != _NPY_MAGIC or len(data) < 10:
        raise InputError(f"{path}: not a .npy file; {fix}")
    if data[6] == 1:
        (size,), start = struct.unpack_from("<H", data, 8), 10
    elif data[6] in (2, 3):
        (size,), start = struct.unpack_from("<I", data, 8), 12
    else:
        raise InputError(f"{path}: unknown .npy format version {data[6]}; {fix}")
    header = _npy_header(path, data[start : start + size], fix)
    descr, shape = header.get("descr"), header.get("shape")
    if (
        not isinstance(descr, str)
        or descr[:1] not in ("<", ">", "|", "=")
        or descr[1:] not in _NPY_CODES
    ):
        raise InputError(f"{path}: the array holds {descr!r}, not numbers; {fix}")
    if not isinstance(shape, tuple) or len(shape) != 1 or not isinstance(shape[0], int):
        raise InputError(f"{path}: the array has shape {shape}, not a 1-D vector; {fix}")
    code = _NPY_CODES[descr[1:]]
    order = ">" if descr[0] == ">" else "<"
    layout = f"{order}{shape[0]}{code}"
    if len(data) - start - size < struct.calcsize(layout):
        raise InputError(f"{path}: the file ends before its {shape[0]} numbers do; {fix}")
    return [float(v) for v in struct.unpack_from(layout, data, start + size)]


def _npy_header(path: Path, raw: bytes, fix: str) -> dict[str, object]:
    import ast

    try:
        header = ast.literal_eval(raw.decode("latin-1"))
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise InputError(f"{path}: the .npy header cannot be read; {fix}") from exc
    if not isinstance(header, dict):
        raise InputError(f"{path}: the .npy header is not a dict; {fix}")
    return header


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc
