"""The weights file's format without torch: its metadata, its arrays, and what a model answers.

A version's ``weights.safetensors`` carries the spec, labels, input size and sample count in
its metadata. Reading them (and the tensors, as numpy arrays) needs only numpy and
safetensors, so the daemon can serve a vector model without importing torch; the torch
:class:`~tailord.trainer.model.Model` reads the same metadata through these functions.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np
import numpy.typing as npt
import safetensors.numpy

from tailord.trainer.errors import ModelError
from tailord.trainer.spec import ModelSpec

__all__ = ["FORMAT", "Estimate", "Prediction", "Weights", "read_weights"]

FORMAT = "tailord.model/1"
RESTORE = "restore the version's weights file from a good copy"
# safetensors refuses headers above 100 MB itself; checking first avoids parsing junk.
_MAX_HEADER_BYTES = 100_000_000
BACKBONE = "backbone."  # prefix of a custom backbone's trained tensors in the weights file


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # in [0, 1]


@dataclass(frozen=True)
class Estimate:
    """A regress model's answer: the estimated target."""

    value: float


@dataclass(frozen=True)
class Weights:
    """A weights file read with numpy: its metadata fields and its arrays by name."""

    spec: ModelSpec
    labels: tuple[str, ...]
    dim: int | None
    sample_count: int
    arrays: dict[str, npt.NDArray[np.generic]]


def read_weights(data: bytes) -> Weights:
    """Parse a weights file into numpy arrays; anything malformed raises ModelError."""
    metadata = read_metadata(data)
    try:
        arrays = safetensors.numpy.load(bytes(data))
    except Exception as exc:  # the Rust parser raises its own types; all mean "damaged"
        raise ModelError(f"the weights cannot be parsed ({exc}); {RESTORE}") from exc
    for name, array in arrays.items():
        if np.issubdtype(array.dtype, np.floating) and not bool(np.isfinite(array).all()):
            raise ModelError(f"the tensor {name!r} holds NaN or inf; {RESTORE}")
    spec, labels, dim, count = read_fields(metadata)
    check_labels(labels)
    return Weights(spec, labels, dim, count, arrays)


def read_fields(metadata: dict[str, str]) -> tuple[ModelSpec, tuple[str, ...], int | None, int]:
    """The spec, labels, dim and sample count a weights file's metadata names."""
    if metadata.get("format") != FORMAT:
        raise ModelError(
            f"the weights are in format {metadata.get('format')!r}, not {FORMAT!r}; "
            "load files written by this tailord version"
        )
    spec_dict = json_field(metadata, "spec")
    labels = json_field(metadata, "labels")
    dim = json_field(metadata, "dim")
    count = json_field(metadata, "sample_count")
    if (
        not isinstance(spec_dict, dict)
        or not isinstance(labels, list)
        or not (dim is None or is_int(dim))
        or not is_int(count)
    ):
        raise ModelError(f"the weights' metadata has fields of the wrong type; {RESTORE}")
    return ModelSpec.from_dict(spec_dict), tuple(labels), dim, count


def metadata_of(
    spec: ModelSpec, labels: tuple[str, ...], dim: int | None, count: int
) -> dict[str, str]:
    """The metadata :func:`read_fields` reads back."""
    return {
        "format": FORMAT,
        "spec": json.dumps(spec.to_dict(), sort_keys=True),
        "labels": json.dumps(list(labels)),
        "dim": json.dumps(dim),
        "sample_count": str(count),
    }


def as_rows(x: npt.NDArray[np.generic], dim: int | None = None) -> npt.NDArray[np.float32]:
    try:
        # A copy: torch must not share (or warn about) a caller's read-only buffer.
        rows = np.array(x, dtype=np.float32, order="C")
    except (TypeError, ValueError) as exc:
        raise ModelError(f"the input is not numeric ({exc}); pass numbers only") from exc
    if rows.ndim != 2:
        expected = "(n, features)" if dim is None else f"(n, {dim})"
        raise ModelError(
            f"the input has shape {rows.shape}, expected {expected}; pass one row per sample"
        )
    if not np.isfinite(rows).all():
        raise ModelError("the input holds NaN or inf; pass finite numbers only")
    return rows


def read_metadata(data: bytes) -> dict[str, str]:
    # safetensors.torch.load drops the metadata, so read the documented header ourselves:
    # 8 bytes little-endian length, then that many bytes of JSON.
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 8:
        raise ModelError(f"the weights are too short to be a safetensors file; {RESTORE}")
    (size,) = struct.unpack("<Q", bytes(data[:8]))
    if size > min(len(data) - 8, _MAX_HEADER_BYTES):
        raise ModelError(f"the weights' header length {size} is impossible; {RESTORE}")
    try:
        header = json.loads(bytes(data[8 : 8 + size]))
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"the weights' header is not JSON; {RESTORE}") from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ModelError(f"the weights carry no tailord metadata; {RESTORE}")
    return metadata


def json_field(metadata: dict[str, str], key: str) -> object:
    try:
        return json.loads(metadata[key])
    except (KeyError, ValueError, RecursionError) as exc:
        raise ModelError(f"the weights' metadata lacks a valid {key!r}; {RESTORE}") from exc


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def check_labels(labels: tuple[str, ...]) -> None:
    if not all(isinstance(label, str) and label for label in labels):
        raise ModelError("every label must be a non-empty string; name each inbox folder")
    if len(set(labels)) != len(labels):
        raise ModelError(f"the labels {list(labels)} repeat a name; keep each label once")


def check_task(spec: ModelSpec, task: str) -> None:
    """Refuse a prediction of the other kind (a label from a regress model, a number from a
    classifier), saying which to ask for."""
    if spec.task != task:
        how = "estimate (a number)" if spec.regress else "predict (a label)"
        raise ModelError(f'this is a task = "{spec.task}" model; ask it to {how} instead')


def check_width(width: int, dim: int | None) -> None:
    """Refuse features of another width than the head's."""
    if width != dim:
        raise ModelError(
            f"the features have {width} values, the head expects {dim}; "
            "use samples of the kind this model learned"
        )


def expect_names(tensors: Mapping[str, object], names: set[str]) -> None:
    """Refuse a head's tensors unless they are exactly ``names`` (torch heads and k-NN alike)."""
    if set(tensors) != names:
        raise ModelError(
            f"the weights hold tensors {sorted(tensors)}, expected {sorted(names)}; "
            "the file belongs to another head or is damaged, so load it with the matching spec"
        )
