"""A Model: spec + labels + head, its predictions, and its safetensors form.

A Model is never changed after construction: updates build a new one. That is what makes
predict safe from several threads and lets the daemon swap versions by one assignment.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np
import numpy.typing as npt
import safetensors.torch
import torch

from tailord.trainer.errors import ModelError
from tailord.trainer.heads import KnnHead, LinearHead
from tailord.trainer.spec import ModelSpec

logger = logging.getLogger(__name__)

FORMAT = "tailord.model/1"
# safetensors refuses headers above 100 MB itself; checking first avoids parsing junk.
_MAX_HEADER_BYTES = 100_000_000
_RESTORE = "restore the version's weights file from a good copy"

HeadType = KnnHead | LinearHead


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # in [0, 1]


class Model:
    """An immutable model version's contents; build one with base, run_update or from_bytes."""

    spec: ModelSpec
    labels: tuple[str, ...]  # index i <-> label
    dim: int | None

    def __init__(
        self, spec: ModelSpec, labels: tuple[str, ...], dim: int | None, head: HeadType
    ) -> None:
        _check_labels(labels)
        _check_head(spec, labels, dim, head)
        self.spec = spec
        self.labels = labels
        self.dim = dim
        self._head = head

    @classmethod
    def base(cls, spec: ModelSpec) -> Model:
        """Version 0: no labels, nothing learned."""
        head: HeadType
        if spec.head == "knn":
            head = KnnHead.empty(spec.dim, spec.k, spec.metric)
        else:
            head = LinearHead(None, 0)
        return cls(spec, (), spec.dim, head)

    @property
    def head(self) -> HeadType:
        return self._head

    @property
    def sample_count(self) -> int:
        """k-NN: rows in memory; linear: samples it was trained on, over all updates."""
        return self._head.sample_count

    def predict(self, x: npt.NDArray[np.generic]) -> list[Prediction]:
        """The best label for each row of ``x`` (shape (n, dim)); read-only, thread-safe."""
        if not self.labels:
            raise ModelError(
                "no version has learned any label yet; "
                "drop samples into the inbox and wait for an update"
            )
        try:
            # A copy: torch must not share (or warn about) a caller's read-only buffer.
            rows = np.array(x, dtype=np.float32, order="C")
        except (TypeError, ValueError) as exc:
            raise ModelError(f"the input is not numeric ({exc}); pass numbers only") from exc
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ModelError(
                f"the input has shape {rows.shape}, expected (n, {self.dim}); "
                f"pass one row of {self.dim} values per sample"
            )
        if not np.isfinite(rows).all():
            raise ModelError("the input holds NaN or inf; pass finite numbers only")
        with torch.inference_mode():
            scores = self._head.scores(torch.from_numpy(rows), len(self.labels))
            best, index = scores.max(dim=1)
        return [
            Prediction(self.labels[int(i)], min(1.0, max(0.0, float(s))))
            for s, i in zip(best.tolist(), index.tolist(), strict=True)
        ]

    def to_bytes(self) -> bytes:
        """The safetensors file of this model; spec and labels travel in its metadata."""
        metadata = {
            "format": FORMAT,
            "spec": json.dumps(self.spec.to_dict(), sort_keys=True),
            "labels": json.dumps(list(self.labels)),
            "dim": json.dumps(self.dim),
            "sample_count": str(self.sample_count),
        }
        return safetensors.torch.save(self._head.tensors(), metadata=metadata)

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        """Parse :meth:`to_bytes` output; anything malformed raises ModelError."""
        metadata = _read_metadata(data)
        try:
            tensors = safetensors.torch.load(bytes(data))
        except Exception as exc:  # the Rust parser raises its own types; all mean "damaged"
            raise ModelError(f"the weights cannot be parsed ({exc}); {_RESTORE}") from exc
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ModelError(f"the tensor {name!r} holds NaN or inf; {_RESTORE}")
        if metadata.get("format") != FORMAT:
            raise ModelError(
                f"the weights are in format {metadata.get('format')!r}, not {FORMAT!r}; "
                "load files written by this tailord version"
            )
        spec_dict = _json_field(metadata, "spec")
        labels = _json_field(metadata, "labels")
        dim = _json_field(metadata, "dim")
        count = _json_field(metadata, "sample_count")
        if (
            not isinstance(spec_dict, dict)
            or not isinstance(labels, list)
            or not (dim is None or _is_int(dim))
            or not _is_int(count)
        ):
            raise ModelError(f"the weights' metadata has fields of the wrong type; {_RESTORE}")
        spec = ModelSpec.from_dict(spec_dict)
        head: HeadType
        if spec.head == "knn":
            head = KnnHead.from_tensors(tensors, spec.k, spec.metric)
        else:
            head = LinearHead.from_tensors(tensors, count)
        return cls(spec, tuple(labels), dim, head)


def _read_metadata(data: bytes) -> dict[str, str]:
    # safetensors.torch.load drops the metadata, so read the documented header ourselves:
    # 8 bytes little-endian length, then that many bytes of JSON.
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 8:
        raise ModelError(f"the weights are too short to be a safetensors file; {_RESTORE}")
    (size,) = struct.unpack("<Q", bytes(data[:8]))
    if size > min(len(data) - 8, _MAX_HEADER_BYTES):
        raise ModelError(f"the weights' header length {size} is impossible; {_RESTORE}")
    try:
        header = json.loads(bytes(data[8 : 8 + size]))
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"the weights' header is not JSON; {_RESTORE}") from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ModelError(f"the weights carry no tailord metadata; {_RESTORE}")
    return metadata


def _json_field(metadata: dict[str, str], key: str) -> object:
    try:
        return json.loads(metadata[key])
    except (KeyError, ValueError, RecursionError) as exc:
        raise ModelError(f"the weights' metadata lacks a valid {key!r}; {_RESTORE}") from exc


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_labels(labels: tuple[str, ...]) -> None:
    if not all(isinstance(label, str) and label for label in labels):
        raise ModelError("every label must be a non-empty string; name each inbox folder")
    if len(set(labels)) != len(labels):
        raise ModelError(f"the labels {list(labels)} repeat a name; keep each label once")


def _check_head(spec: ModelSpec, labels: tuple[str, ...], dim: int | None, head: HeadType) -> None:
    if dim is not None and (not _is_int(dim) or dim < 1):
        raise ModelError(f"dim is {dim!r}; it must be a positive integer or None")
    if spec.dim is not None and dim != spec.dim:
        raise ModelError(
            f"the model's dim {dim} differs from the spec's dim {spec.dim}; "
            "use weights that match the spec, or change [model] dim"
        )
    expected = KnnHead if spec.head == "knn" else LinearHead
    if not isinstance(head, expected):
        raise ModelError(f"the spec asks for a {spec.head} head; load weights of that head")
    if isinstance(head, KnnHead):
        if head.sample_count and head.dim != dim:
            raise ModelError(f"the k-NN memory has dim {head.dim}, not {dim}; {_RESTORE}")
        if head.sample_count and int(head.targets.max()) >= len(labels):
            raise ModelError(f"the k-NN memory refers to unknown labels; {_RESTORE}")
        if head.sample_count and int(head.targets.min()) < 0:
            raise ModelError(f"the k-NN memory refers to negative labels; {_RESTORE}")
        learned = head.sample_count > 0
    else:
        layer = head.layer
        if layer is not None and (layer.in_features != dim or layer.out_features != len(labels)):
            raise ModelError(
                f"the linear layer is {layer.out_features}x{layer.in_features}, expected "
                f"{len(labels)}x{dim}; {_RESTORE}"
            )
        learned = layer is not None
    if learned != bool(labels):
        raise ModelError(f"the labels and the learned weights disagree; {_RESTORE}")
