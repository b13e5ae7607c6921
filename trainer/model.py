"""A Model: spec + labels + head, its predictions, and its safetensors form.

A Model is never changed after construction: updates build a new one. That is what makes
predict safe from several threads and lets the daemon swap versions by one assignment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt
import safetensors.torch
import torch

from tailord.trainer.backbones import Backbone, build_custom, load_backbone
from tailord.trainer.build import RESTORE as _RESTORE
from tailord.trainer.build import HeadType, check_head, empty_head, head_from_tensors
from tailord.trainer.errors import ModelError
from tailord.trainer.heads import LinearHead, MlpHead
from tailord.trainer.knn_regress import KnnRegressor
from tailord.trainer.spec import ModelSpec
from tailord.trainer.weights import (
    BACKBONE as _BACKBONE,
)
from tailord.trainer.weights import (
    FORMAT,
    Estimate,
    Prediction,
    as_rows,
    check_labels,
    check_task,
    check_width,
    metadata_of,
    read_fields,
    read_metadata,
)

__all__ = ["FORMAT", "Estimate", "HeadType", "Model", "Prediction"]

logger = logging.getLogger(__name__)


class Model:
    """An immutable model version's contents; build one with base, run_update or from_bytes."""

    spec: ModelSpec
    labels: tuple[str, ...]  # index i <-> label; always empty for a regress model
    dim: int | None  # the head's input size (the backbone's feature size)

    def __init__(
        self,
        spec: ModelSpec,
        labels: tuple[str, ...],
        dim: int | None,
        head: HeadType,
        *,
        backbone_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        check_labels(labels)
        self._learned = check_head(spec, labels, dim, head)
        self.spec = spec
        self.labels = labels
        self.dim = dim
        self._head = head
        self._backbone_state = dict(backbone_state or {})
        self._backbone: Backbone | None = None
        self._lock = threading.Lock()

    @classmethod
    def base(cls, spec: ModelSpec) -> Model:
        """Version 0: no labels, nothing learned."""
        return cls(spec, (), spec.dim if spec.backbone == "vector" else None, empty_head(spec))

    def with_k(self, k: int) -> Model:
        """The same model, its k-NN head voting with ``k`` neighbours (an update's own ``k``).

        Only k changes: the memory, labels and backbone are the same tensors.
        """
        if k == self.spec.k:
            return self
        spec = msgspec.structs.replace(self.spec, k=k)
        head = head_from_tensors(spec, dict(self._head.tensors()), self.sample_count)
        return Model(spec, self.labels, self.dim, head, backbone_state=self._backbone_state)

    @property
    def head(self) -> HeadType:
        return self._head

    @property
    def learned(self) -> bool:
        """Whether it can answer: some label (classify) or some target (regress) learned."""
        return self._learned

    @property
    def sample_count(self) -> int:
        """k-NN: rows in memory; auto: samples offered; trained heads: samples trained on."""
        return self._head.sample_count

    @property
    def trains_backbone(self) -> bool:
        """A custom backbone with updatable parameters: rows fed to updates are raw vectors."""
        return self.spec.is_custom and bool(self.spec.updatable)

    @property
    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The trained parameters of a custom backbone (empty for frozen backbones)."""
        return dict(self._backbone_state)

    @property
    def backbone(self) -> Backbone:
        """Built on first use (the text model takes seconds to load), then shared."""
        with self._lock:
            if self._backbone is None:
                backbone = load_backbone(self.spec)
                if backbone.module is not None and self._backbone_state:
                    _load_params(backbone.module, self._backbone_state)
                self._backbone = backbone
            return self._backbone

    def trainable_backbone_copy(self) -> torch.nn.Module:
        """A fresh custom module with this version's trained parameters, ready to train."""
        module = build_custom(self.spec)
        _load_params(module, self._backbone_state)
        module.train()
        return module

    def encode(self, payloads: Sequence[bytes]) -> npt.NDArray[np.float32]:
        """Stored payloads as the rows run_update and predict_encoded take."""
        if self.trains_backbone:
            return self.backbone.inputs(payloads)
        return self.backbone.features(payloads)

    def rows(self, x: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        """Vectors (shape (n, dim)) as :meth:`encode` gives payloads: what the head takes."""
        if self.spec.input_kind != "vector":
            raise ModelError(
                f"this model takes {self.spec.input_kind} samples, not vectors; "
                "send them as files (predict_payloads)"
            )
        rows = as_rows(x, self.dim if self.spec.backbone == "vector" else None)
        if self.spec.backbone == "vector" and rows.shape[1] != self.dim:
            raise ModelError(
                f"the input has shape {rows.shape}, expected (n, {self.dim}); "
                f"pass one row of {self.dim} values per sample"
            )
        if self.spec.is_custom and not self.trains_backbone:
            rows = self.backbone.features([r.astype("<f4").tobytes() for r in rows])
        return rows

    def predict_payloads(self, payloads: Sequence[bytes]) -> list[Prediction]:
        """Predict stored-form payloads: float32 vector bytes, UTF-8 text or image bytes."""
        self._check_ready("classify")
        return self.predict_encoded(self.encode(payloads))

    def predict(self, x: npt.NDArray[np.generic]) -> list[Prediction]:
        """The best label for each row of ``x`` (shape (n, dim)); read-only, thread-safe."""
        self._check_ready("classify")
        return self.predict_encoded(self.rows(x))

    def predict_encoded(self, x: npt.NDArray[np.generic]) -> list[Prediction]:
        """Predict rows as :meth:`encode` gives them."""
        self._check_ready("classify")
        head = self._head
        assert not isinstance(head, KnnRegressor)  # _check_ready: a classify model's head
        with torch.inference_mode():
            scores = head.scores(self._head_inputs(x), len(self.labels))
            best, index = scores.max(dim=1)
        return [
            Prediction(self.labels[int(i)], min(1.0, max(0.0, float(s))))
            for s, i in zip(best.tolist(), index.tolist(), strict=True)
        ]

    def rank_encoded(self, x: npt.NDArray[np.generic], k: int) -> list[list[Prediction]]:
        """The ``k`` best labels for each row, best first (fewer when fewer are known)."""
        self._check_ready("classify")
        head = self._head
        assert not isinstance(head, KnnRegressor)  # _check_ready: a classify model's head
        with torch.inference_mode():
            scores = head.scores(self._head_inputs(x), len(self.labels))
            best, index = scores.topk(min(k, scores.shape[1]), dim=1)
        return [
            [
                Prediction(self.labels[int(i)], min(1.0, max(0.0, float(s))))
                for s, i in zip(row_scores, row_index, strict=True)
            ]
            for row_scores, row_index in zip(best.tolist(), index.tolist(), strict=True)
        ]

    def estimate_payloads(self, payloads: Sequence[bytes]) -> list[Estimate]:
        """A regress model's estimate for stored-form payloads."""
        self._check_ready("regress")
        return self.estimate_encoded(self.encode(payloads))

    def estimate(self, x: npt.NDArray[np.generic]) -> list[Estimate]:
        """A regress model's estimate for each row of ``x`` (shape (n, dim)); thread-safe."""
        self._check_ready("regress")
        return self.estimate_encoded(self.rows(x))

    def estimate_encoded(self, x: npt.NDArray[np.generic]) -> list[Estimate]:
        """Estimate rows as :meth:`encode` gives them."""
        self._check_ready("regress")
        head = self._head
        with torch.inference_mode():
            inputs = self._head_inputs(x)
            if isinstance(head, KnnRegressor):
                values = head.estimate(inputs)
            else:
                assert isinstance(head, LinearHead | MlpHead)
                assert head.layer is not None
                values = head.layer(inputs)[:, 0]
        return [Estimate(float(v)) for v in values.tolist()]

    def _head_inputs(self, x: npt.NDArray[np.generic]) -> torch.Tensor:
        inputs = torch.from_numpy(as_rows(x))
        if self.trains_backbone:
            inputs = self.backbone.forward_vectors(inputs)
        check_width(inputs.shape[1], self.dim)
        return inputs

    def _check_ready(self, task: str) -> None:
        check_task(self.spec, task)
        self.check_learned()

    def check_learned(self) -> None:
        """Raise ModelError, saying what to do, unless some label or target is learned."""
        if not self._learned:
            raise ModelError(
                f"no version has learned any {'target' if self.spec.regress else 'label'} yet; "
                "drop samples into the inbox and wait for an update"
            )

    def to_bytes(self) -> bytes:
        """The safetensors file of this model; spec and labels travel in its metadata."""
        metadata = metadata_of(self.spec, self.labels, self.dim, self.sample_count)
        tensors = dict(self._head.tensors())
        tensors.update({_BACKBONE + k: v.contiguous() for k, v in self._backbone_state.items()})
        return safetensors.torch.save(tensors, metadata=metadata)

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        """Parse :meth:`to_bytes` output; anything malformed raises ModelError."""
        metadata = read_metadata(data)
        try:
            tensors = safetensors.torch.load(bytes(data))
        except Exception as exc:  # the Rust parser raises its own types; all mean "damaged"
            raise ModelError(f"the weights cannot be parsed ({exc}); {_RESTORE}") from exc
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ModelError(f"the tensor {name!r} holds NaN or inf; {_RESTORE}")
        spec, labels, dim, count = read_fields(metadata)
        backbone = {k[len(_BACKBONE) :]: v for k, v in tensors.items() if k.startswith(_BACKBONE)}
        head_tensors = {k: v for k, v in tensors.items() if not k.startswith(_BACKBONE)}
        head = head_from_tensors(spec, head_tensors, count)
        return cls(spec, labels, dim, head, backbone_state=backbone)


def _load_params(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = dict(module.named_parameters())
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ModelError(
            f"the weights hold backbone tensors {unknown[:5]} that the module lacks; "
            "the factory changed since this version was made: restore its package version"
        )
    with torch.no_grad():
        for name, value in state.items():
            if own[name].shape != value.shape:
                raise ModelError(
                    f"the backbone tensor {name} is {tuple(value.shape)}, the module's is "
                    f"{tuple(own[name].shape)}; restore the factory's package version"
                )
            own[name].copy_(value)
