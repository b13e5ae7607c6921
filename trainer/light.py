"""A vector model served on numpy: the same answers as :class:`~tailord.trainer.model.Model`.

Over the vector backbone a head's forward pass is a distance matrix and a vote (k-NN) or one
or two matrix products (linear, mlp), so the daemon loads such a version as a
:class:`LightModel` and never imports torch for it (start-up and memory: docs/architecture.md,
"Where torch is imported"). Image, text and custom backbones need torch: :func:`serves_light`
says which specs this module answers for. No torch here: an import-linter contract keeps it so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
import numpy as np
import numpy.typing as npt
import safetensors.numpy

from tailord.trainer.errors import ModelError
from tailord.trainer.npheads import (
    F32,
    I64,
    NearestRows,
    knn_means,
    knn_scores,
    linear,
    relu,
    softmax,
)
from tailord.trainer.spec import ModelSpec
from tailord.trainer.vectors import vector_from_bytes
from tailord.trainer.vote import METRICS, label_weights, raw_metric
from tailord.trainer.weights import (
    RESTORE,
    Estimate,
    Prediction,
    as_rows,
    check_task,
    check_width,
    metadata_of,
    read_weights,
)

Arrays = Mapping[str, npt.NDArray[np.generic]]
_KNN = ("knn.memory", "knn.targets", "knn.seen")
_SCALING = {"knn.center", "knn.scale"}  # the vote's standardization: trainer/vote.py
_METRIC = {"knn.metric"}  # the metric chosen with it; files before metric = "auto" lack it
_BALANCE = {"knn.balance"}  # whether its votes are balanced; files before that lack it
_KNN_REGRESS = ("knn.memory", "knn.values", "knn.seen")
_LINEAR = ("linear.weight", "linear.bias")
_MLP = ("mlp.hidden.weight", "mlp.hidden.bias", "mlp.out.weight", "mlp.out.bias")


def serves_light(spec: ModelSpec) -> bool:
    """Whether a model of ``spec`` is served by :class:`LightModel` (no torch)."""
    return spec.backbone == "vector"


class LightModel:
    """An immutable vector model version on numpy arrays; build one with base or from_bytes."""

    trains_backbone = False  # only custom backbones train theirs, and they need torch

    def __init__(
        self, spec: ModelSpec, labels: tuple[str, ...], dim: int | None, count: int, arrays: Arrays
    ) -> None:
        if not serves_light(spec):
            raise ModelError(f"the {spec.backbone} backbone needs torch; load it as a Model")
        self.spec = spec
        self.labels = labels
        self.dim = dim
        self.arrays = dict(arrays)
        self._parts = _parts(spec, labels, dim, self.arrays)
        self._count = count
        self.learned = self._check_learned_consistent()

    @classmethod
    def base(cls, spec: ModelSpec) -> LightModel:
        """Version 0: no labels, nothing learned (the same file as ``Model.base(spec)``)."""
        dim = spec.dim or 0
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        if spec.head in ("knn", "auto"):
            arrays["knn.memory"] = np.zeros((0, dim), dtype=np.float32)
            if spec.regress:
                arrays["knn.values"] = np.zeros(0, dtype=np.float32)
                arrays["knn.seen"] = np.zeros(1, dtype=np.int64)
            else:
                arrays["knn.targets"] = np.zeros(0, dtype=np.int64)
                arrays["knn.seen"] = np.zeros(0, dtype=np.int64)
        return cls(spec, (), spec.dim, 0, arrays)

    def with_k(self, k: int) -> LightModel:
        """The same model, its k-NN memory voting with ``k`` neighbours (an update's own ``k``,
        as ``Model.with_k``); the arrays are shared."""
        if k == self.spec.k:
            return self
        spec = msgspec.structs.replace(self.spec, k=k)
        return LightModel(spec, self.labels, self.dim, self._count, self.arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> LightModel:
        """Parse a weights file of a vector model; anything malformed raises ModelError."""
        weights = read_weights(data)
        return cls(weights.spec, weights.labels, weights.dim, weights.sample_count, weights.arrays)

    def to_bytes(self) -> bytes:
        """The safetensors file of this model; spec and labels travel in its metadata."""
        metadata = metadata_of(self.spec, self.labels, self.dim, self.sample_count)
        return safetensors.numpy.save(self.arrays, metadata=metadata)

    @property
    def sample_count(self) -> int:
        """k-NN: rows in memory; auto: samples offered; trained heads: samples trained on."""
        if self.spec.head == "knn":
            return int(self.arrays["knn.memory"].shape[0])
        if self.spec.head == "auto":
            return int(self.arrays["knn.seen"].sum())
        return self._count

    def encode(self, payloads: Sequence[bytes]) -> F32:
        """Stored float32 vector payloads as rows."""
        if not payloads:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        sizes = set(map(len, payloads))
        if len(sizes) != 1:
            raise ModelError("the vectors have different sizes; drop vectors of one size only")
        (size,) = sizes
        if size % 4:
            vector_from_bytes(payloads[0])  # raises, saying what is wrong
        joined = np.frombuffer(b"".join(payloads), dtype="<f4")
        return joined.astype(np.float32).reshape(len(payloads), size // 4)

    def rows(self, x: npt.NDArray[np.generic]) -> F32:
        """Vectors (shape (n, dim)) as the head takes them."""
        rows = as_rows(x, self.dim)
        if rows.shape[1] != self.dim:
            raise ModelError(
                f"the input has shape {rows.shape}, expected (n, {self.dim}); "
                f"pass one row of {self.dim} values per sample"
            )
        return rows

    def predict(self, x: npt.NDArray[np.generic]) -> list[Prediction]:
        self._check_ready("classify")
        return self.predict_encoded(self.rows(x))

    def predict_encoded(self, x: npt.NDArray[np.generic]) -> list[Prediction]:
        return [ranked[0] for ranked in self.rank_encoded(x, 1)]

    def rank_encoded(self, x: npt.NDArray[np.generic], k: int) -> list[list[Prediction]]:
        """The ``k`` best labels for each row, best first (fewer when fewer are known)."""
        self._check_ready("classify")
        scores = self._scores(self._inputs(x))
        k = min(k, scores.shape[1])
        # Stable on the negated scores: ties go to the lower label index, as torch's topk.
        index = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(scores, index, axis=1)
        return [
            [
                Prediction(self.labels[int(i)], min(1.0, max(0.0, float(s))))
                for s, i in zip(row_scores, row_index, strict=True)
            ]
            for row_scores, row_index in zip(best.tolist(), index.tolist(), strict=True)
        ]

    def estimate(self, x: npt.NDArray[np.generic]) -> list[Estimate]:
        self._check_ready("regress")
        return self.estimate_encoded(self.rows(x))

    def estimate_encoded(self, x: npt.NDArray[np.generic]) -> list[Estimate]:
        """A regress model's estimate for each row."""
        self._check_ready("regress")
        inputs = self._inputs(x)
        knn, layers = self._parts
        if knn is not None:
            values = knn_means(knn[0], knn[1].astype(np.float32), inputs)
        else:
            values = _forward(layers, inputs)[:, 0]
        return [Estimate(float(v)) for v in values.tolist()]

    def check_learned(self) -> None:
        """Raise ModelError, saying what to do, unless some label or target is learned."""
        if not self.learned:
            raise ModelError(
                f"no version has learned any {'target' if self.spec.regress else 'label'} yet; "
                "drop samples into the inbox and wait for an update"
            )

    def _scores(self, x: F32) -> F32:
        knn, layers = self._parts
        n_labels = len(self.labels)
        # auto: the trained layer answers once it covers every label, the memory until then
        if layers and layers[-1][0].shape[0] == n_labels:
            return softmax(_forward(layers, x))
        if knn is None:
            return np.zeros((x.shape[0], n_labels), dtype=np.float32)
        return knn_scores(knn[0], knn[1].astype(np.int64), x, n_labels, knn[2])

    def _inputs(self, x: npt.NDArray[np.generic]) -> F32:
        inputs = as_rows(x)
        check_width(inputs.shape[1], self.dim)
        return inputs

    def _check_ready(self, task: str) -> None:
        check_task(self.spec, task)
        self.check_learned()

    def _check_learned_consistent(self) -> bool:
        knn, layers = self._parts
        learned = bool(layers) or (knn is not None and knn[0].rows > 0)
        if not self.spec.regress and learned != bool(self.labels):
            raise ModelError(f"the labels and the learned weights disagree; {RESTORE}")
        return learned


Layers = list[tuple[F32, F32]]  # (weight [out, in], bias [out]) per linear layer, in order
# a k-NN's rows, targets (or values) and balanced vote's label weights (None: unbalanced)
Knn = tuple[NearestRows, npt.NDArray[np.generic], F32 | None]
Parts = tuple[Knn | None, Layers]


def _forward(layers: Layers, x: F32) -> F32:
    for i, (weight, bias) in enumerate(layers):
        x = linear(relu(x) if i else x, weight, bias)
    return x


def _parts(spec: ModelSpec, labels: tuple[str, ...], dim: int | None, arrays: Arrays) -> Parts:
    """The head's pieces, checked against the spec, the labels and the input size."""
    if spec.dim is not None and dim != spec.dim:
        raise ModelError(
            f"the model's dim {dim} differs from the spec's dim {spec.dim}; "
            "use weights that match the spec, or change [model] dim"
        )
    if spec.regress and labels:
        raise ModelError(f"a regress model has no labels, but the weights list some; {RESTORE}")
    outputs = 1 if spec.regress else len(labels)
    names = set(arrays)
    knn_options: list[set[str]] = [set()]
    if spec.head in ("knn", "auto"):
        full = set(_KNN_REGRESS if spec.regress else _KNN)
        # A classify memory's seen counts and scaling are optional: older files lack them.
        knn_options = (
            [full]
            if spec.regress
            else [
                full | _SCALING | _METRIC | _BALANCE,
                full | _SCALING | _METRIC,
                full | _SCALING,
                full,
                full - {"knn.seen"} | _SCALING | _METRIC | _BALANCE,
                full - {"knn.seen"} | _SCALING | _METRIC,
                full - {"knn.seen"} | _SCALING,
                full - {"knn.seen"},
            ]
        )
    layer_set = {"linear": set(_LINEAR), "mlp": set(_MLP), "auto": set(_LINEAR)}.get(spec.head)
    layer_options = [set(), layer_set] if layer_set else [set()]
    allowed = [a | b for a in knn_options for b in layer_options]
    if names not in allowed:
        raise ModelError(
            f"the weights hold tensors {sorted(names)}, expected {sorted(allowed[-1])}; "
            "the file belongs to another head or is damaged, so load it with the matching spec"
        )
    knn_names = knn_options[0]
    knn = _knn(spec, labels, dim, arrays) if knn_names else None
    names_in_order = [n for n in (*_LINEAR, *_MLP) if n in names]
    layers: Layers = []
    for weight_name, bias_name in zip(names_in_order[::2], names_in_order[1::2], strict=True):
        layers.append((_float(arrays, weight_name, 2), _float(arrays, bias_name, 1)))
    if layers:
        inputs = dim  # None (the first samples fix it) only while nothing is learned
        for weight, bias in layers:
            if weight.shape[1] != inputs or bias.shape != (weight.shape[0],):
                raise ModelError(
                    f"the {spec.head} layers do not chain from {dim} inputs; {RESTORE}"
                )
            inputs = weight.shape[0]
        out = layers[-1][0].shape[0]
        if out != outputs and not (spec.head == "auto" and out <= outputs):
            raise ModelError(
                f"the {spec.head} head has {out} outputs, expected {outputs}; {RESTORE}"
            )
    return knn, layers


def _knn(spec: ModelSpec, labels: tuple[str, ...], dim: int | None, arrays: Arrays) -> Knn:
    memory = _float(arrays, "knn.memory", 2)
    rows = memory.shape[0]
    if rows and memory.shape[1] != dim:
        raise ModelError(f"the k-NN memory has dim {memory.shape[1]}, not {dim}; {RESTORE}")
    targets = arrays["knn.values" if spec.regress else "knn.targets"]
    wanted = np.float32 if spec.regress else np.int64
    if targets.dtype != wanted or targets.shape != (rows,):
        raise ModelError(
            f"the k-NN targets are {targets.dtype} {targets.shape}, not {np.dtype(wanted)} "
            f"[{rows}]; {RESTORE}"
        )
    seen = arrays.get("knn.seen")
    if seen is not None and (
        seen.dtype != np.int64 or seen.ndim != 1 or bool(np.any(np.less(seen, 0)))
    ):
        raise ModelError(f"the k-NN sample counts are not non-negative int64; {RESTORE}")
    if spec.regress and (seen is None or seen.shape != (1,)):
        raise ModelError(f"the k-NN sample count is not one non-negative int64; {RESTORE}")
    if not spec.regress and rows:
        index: I64 = targets.astype(np.int64)
        if int(index.max()) >= len(labels) or int(index.min()) < 0:
            raise ModelError(f"the k-NN memory refers to unknown labels; {RESTORE}")
    center = scale = None
    if "knn.center" in arrays:  # with knn.scale: _parts checked the names
        center, scale = _float(arrays, "knn.center", 1), _float(arrays, "knn.scale", 1)
        if center.shape != (memory.shape[1],) or scale.shape != center.shape:
            raise ModelError(f"the k-NN center and scale do not match the memory; {RESTORE}")
    metric = _metric(spec, arrays)
    rows_of = NearestRows(memory, spec.k, metric, spec.weighting, center, scale)
    balance = None
    if _balanced(arrays):
        balance = label_weights(targets.astype(np.int64), len(labels))
    return rows_of, targets, balance


def _metric(spec: ModelSpec, arrays: Arrays) -> str:
    if "knn.metric" not in arrays:
        return raw_metric(spec.metric)  # files from before the metric was stored
    code = arrays["knn.metric"]
    if code.dtype != np.int64 or code.shape != (1,) or not 0 <= int(code[0]) < len(METRICS):
        raise ModelError(
            f"the k-NN metric is {code.dtype} {code.shape}, not one int64 index of "
            f"{', '.join(METRICS)}; {RESTORE}"
        )
    return METRICS[int(code[0])]


def _balanced(arrays: Arrays) -> bool:
    if "knn.balance" not in arrays:
        return False  # files from before votes were balanced
    code = arrays["knn.balance"]
    if code.dtype != np.int64 or code.shape != (1,) or int(code[0]) not in (0, 1):
        raise ModelError(
            f"the k-NN balance is {code.dtype} {code.shape}, not one int64 0 or 1; {RESTORE}"
        )
    return bool(code[0])


def _float(arrays: Arrays, name: str, ndim: int) -> F32:
    array = arrays[name]
    if array.dtype != np.float32 or array.ndim != ndim:
        raise ModelError(
            f"the tensor {name} is {array.dtype} {array.shape}, not float32 of {ndim} "
            f"dimensions; {RESTORE}"
        )
    return array.astype(np.float32, copy=False)
