"""Heads from a spec: an empty one (version 0), one from a weights file's tensors, and the
check that a head fits its spec, labels and input size."""

from __future__ import annotations

import torch

from tailord.trainer.errors import ModelError
from tailord.trainer.heads import AutoHead, LinearHead, MlpHead
from tailord.trainer.knn_classify import KnnHead
from tailord.trainer.knn_regress import KnnRegressor
from tailord.trainer.spec import ModelSpec

RESTORE = "restore the version's weights file from a good copy"

HeadType = KnnHead | LinearHead | MlpHead | AutoHead | KnnRegressor


def empty_head(spec: ModelSpec) -> HeadType:
    if spec.head == "knn":
        return _empty_knn_regressor(spec) if spec.regress else _empty_knn(spec)
    if spec.head == "mlp":
        return MlpHead(None, 0, spec.hidden)
    if spec.head == "auto":
        return AutoHead(_empty_knn(spec), LinearHead(None, 0), spec.auto_min_samples)
    return LinearHead(None, 0)


def _dim(spec: ModelSpec) -> int | None:
    return spec.dim if spec.backbone == "vector" else None


def _empty_knn(spec: ModelSpec) -> KnnHead:
    return KnnHead.empty(spec, _dim(spec))


def _empty_knn_regressor(spec: ModelSpec) -> KnnRegressor:
    return KnnRegressor.empty(spec, _dim(spec))


def head_from_tensors(spec: ModelSpec, tensors: dict[str, torch.Tensor], count: int) -> HeadType:
    if spec.head == "knn" and spec.regress:
        return KnnRegressor.from_tensors(tensors, spec)
    if spec.head == "knn":
        return KnnHead.from_tensors(tensors, spec)
    if spec.head == "mlp":
        return MlpHead.from_tensors(tensors, count, spec.hidden)
    if spec.head == "auto":
        knn_part = {k: v for k, v in tensors.items() if k.startswith("knn.")}
        rest = {k: v for k, v in tensors.items() if not k.startswith("knn.")}
        knn = KnnHead.from_tensors(knn_part, spec)
        return AutoHead(knn, LinearHead.from_tensors(rest, 0), spec.auto_min_samples)
    return LinearHead.from_tensors(tensors, count)


def check_head(spec: ModelSpec, labels: tuple[str, ...], dim: int | None, head: HeadType) -> bool:
    """Raise ModelError unless ``head`` fits; returns whether it has learned anything."""
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
        raise ModelError(f"dim is {dim!r}; it must be a positive integer or None")
    if spec.dim is not None and spec.backbone == "vector" and dim != spec.dim:
        raise ModelError(
            f"the model's dim {dim} differs from the spec's dim {spec.dim}; "
            "use weights that match the spec, or change [model] dim"
        )
    knn_type: type = KnnRegressor if spec.regress else KnnHead
    expected = {"knn": knn_type, "linear": LinearHead, "mlp": MlpHead, "auto": AutoHead}[spec.head]
    if not isinstance(head, expected):
        raise ModelError(
            f"the spec asks for a {spec.task} {spec.head} head; load weights of that head"
        )
    if spec.regress and labels:
        raise ModelError(f"a regress model has no labels, but the weights list some; {RESTORE}")
    learned = _check_fit(head, labels, dim, 1 if spec.regress else len(labels))
    if not spec.regress and learned != bool(labels):
        raise ModelError(f"the labels and the learned weights disagree; {RESTORE}")
    return learned


def _check_fit(head: HeadType, labels: tuple[str, ...], dim: int | None, outputs: int) -> bool:
    """Sizes: a classify layer has one output per label, a regress layer one output."""
    if isinstance(head, AutoHead):
        _check_knn(head.knn, labels, dim)
        layer = head.linear.layer
        if layer is not None and (layer.in_features != dim or layer.out_features > len(labels)):
            raise ModelError(f"the auto head's linear layer does not fit; {RESTORE}")
        return head.knn.sample_count > 0
    if isinstance(head, KnnHead):
        return _check_knn(head, labels, dim)
    if isinstance(head, KnnRegressor):
        if head.sample_count and head.dim != dim:
            raise ModelError(f"the k-NN memory has dim {head.dim}, not {dim}; {RESTORE}")
        return head.sample_count > 0
    if isinstance(head, MlpHead):
        if head.layer is not None and (head.in_features != dim or head.out_features != outputs):
            raise ModelError(
                f"the mlp head is {head.out_features}x{head.in_features}, expected "
                f"{outputs}x{dim}; {RESTORE}"
            )
        return head.layer is not None
    layer = head.layer
    if layer is not None and (layer.in_features != dim or layer.out_features != outputs):
        raise ModelError(
            f"the linear layer is {layer.out_features}x{layer.in_features}, expected "
            f"{outputs}x{dim}; {RESTORE}"
        )
    return layer is not None


def _check_knn(head: KnnHead, labels: tuple[str, ...], dim: int | None) -> bool:
    if head.sample_count and head.dim != dim:
        raise ModelError(f"the k-NN memory has dim {head.dim}, not {dim}; {RESTORE}")
    if head.sample_count and int(head.targets.max()) >= len(labels):
        raise ModelError(f"the k-NN memory refers to unknown labels; {RESTORE}")
    if head.sample_count and int(head.targets.min()) < 0:
        raise ModelError(f"the k-NN memory refers to negative labels; {RESTORE}")
    return head.sample_count > 0
