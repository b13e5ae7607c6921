"""The updatable heads: a k-NN memory and a linear layer.

A head knows label *indices* only; the Model maps them to names. Heads are never changed
after construction, so several threads may score with one while an update builds the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import nn

from tailord.trainer.errors import ModelError

# Inverse-distance weights: an exact match dominates the vote instead of dividing by zero.
_DISTANCE_EPS = 1e-6
# Bounds the [queries, memory] distance matrix built at once (~64 MiB of float32).
_MAX_PAIRS = 16_000_000


class Head(Protocol):
    @property
    def sample_count(self) -> int: ...

    def scores(self, x: torch.Tensor, n_labels: int) -> torch.Tensor:
        """Per-label scores in [0, 1] for ``x`` [n, dim] float32: a tensor [n, n_labels]."""
        ...

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the head stores in a safetensors file."""
        ...


class KnnHead:
    """Remembers every sample; the k nearest vote, weighted by inverse distance."""

    MEMORY = "knn.memory"
    TARGETS = "knn.targets"

    def __init__(self, memory: torch.Tensor, targets: torch.Tensor, k: int, metric: str) -> None:
        if memory.dtype != torch.float32 or memory.ndim != 2:
            raise ModelError(
                f"the k-NN memory is {memory.dtype} {tuple(memory.shape)}, not float32 [n, dim]; "
                "restore the version's weights file from a good copy"
            )
        if targets.dtype != torch.int64 or tuple(targets.shape) != (memory.shape[0],):
            raise ModelError(
                f"the k-NN targets are {targets.dtype} {tuple(targets.shape)}, not int64 "
                f"[{memory.shape[0]}]; restore the version's weights file from a good copy"
            )
        self.memory = memory
        self.targets = targets
        self.k = k
        self.metric = metric
        # Normalized once here rather than on every predict call.
        self._unit = nn.functional.normalize(memory, dim=1) if metric == "cosine" else memory

    @classmethod
    def empty(cls, dim: int | None, k: int, metric: str) -> KnnHead:
        memory = torch.zeros(0, dim or 0, dtype=torch.float32)
        return cls(memory, torch.zeros(0, dtype=torch.int64), k, metric)

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], k: int, metric: str) -> KnnHead:
        _expect_names(tensors, {cls.MEMORY, cls.TARGETS})
        return cls(tensors[cls.MEMORY], tensors[cls.TARGETS], k, metric)

    @property
    def sample_count(self) -> int:
        return int(self.memory.shape[0])

    @property
    def dim(self) -> int:
        return int(self.memory.shape[1])

    def appended(self, x: torch.Tensor, y: torch.Tensor) -> KnnHead:
        memory = x if self.sample_count == 0 else torch.cat([self.memory, x])
        targets = y if self.sample_count == 0 else torch.cat([self.targets, y])
        return KnnHead(memory.contiguous(), targets.contiguous(), self.k, self.metric)

    def scores(self, x: torch.Tensor, n_labels: int) -> torch.Tensor:
        k = min(self.k, self.sample_count)
        rows = max(1, _MAX_PAIRS // max(1, self.sample_count))
        chunks = [self._vote(part, k, n_labels) for part in torch.split(x, rows)]
        return torch.cat(chunks) if chunks else torch.zeros(0, n_labels, dtype=torch.float32)

    def _vote(self, x: torch.Tensor, k: int, n_labels: int) -> torch.Tensor:
        if self.metric == "cosine":
            distance = 1.0 - nn.functional.normalize(x, dim=1) @ self._unit.T
        else:
            distance = torch.cdist(x, self.memory)
        nearest, index = torch.topk(distance.clamp_min(0.0), k, dim=1, largest=False)
        weight = 1.0 / (nearest + _DISTANCE_EPS)
        votes = torch.zeros(x.shape[0], n_labels, dtype=weight.dtype)
        votes.scatter_add_(1, self.targets[index], weight)
        return votes / weight.sum(dim=1, keepdim=True)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {self.MEMORY: self.memory, self.TARGETS: self.targets}


class LinearHead:
    """A softmax layer over the backbone's features; no layer until a label is learned."""

    WEIGHT = "linear.weight"
    BIAS = "linear.bias"

    def __init__(self, layer: nn.Linear | None, trained: int) -> None:
        if layer is not None:
            layer.requires_grad_(False)
            layer.eval()
        self.layer = layer
        self.trained = trained

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], trained: int) -> LinearHead:
        if not tensors:
            return cls(None, trained)
        _expect_names(tensors, {cls.WEIGHT, cls.BIAS})
        weight, bias = tensors[cls.WEIGHT], tensors[cls.BIAS]
        if (
            weight.dtype != torch.float32
            or bias.dtype != torch.float32
            or weight.ndim != 2
            or tuple(bias.shape) != (weight.shape[0],)
        ):
            raise ModelError(
                f"the linear layer is {weight.dtype} {tuple(weight.shape)} + {bias.dtype} "
                f"{tuple(bias.shape)}, not float32 [labels, dim] + [labels]; "
                "restore the version's weights file from a good copy"
            )
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        return cls(layer, trained)

    @property
    def sample_count(self) -> int:
        return self.trained

    def scores(self, x: torch.Tensor, n_labels: int) -> torch.Tensor:
        if self.layer is None:
            return torch.zeros(x.shape[0], n_labels, dtype=torch.float32)
        return torch.softmax(self.layer(x), dim=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.layer is None:
            return {}
        return {
            self.WEIGHT: self.layer.weight.detach().contiguous(),
            self.BIAS: self.layer.bias.detach().contiguous(),
        }

    def grown(self, dim: int, n_labels: int) -> nn.Linear:
        """A trainable copy with ``n_labels`` outputs; the old rows are copied unchanged.

        New rows get torch's default initialization, so seed the global generator first
        when the result must be reproducible.
        """
        layer = nn.Linear(dim, n_labels)
        if self.layer is not None:
            old = self.layer.out_features
            with torch.no_grad():
                layer.weight[:old] = self.layer.weight
                layer.bias[:old] = self.layer.bias
        return layer


def _expect_names(tensors: Mapping[str, torch.Tensor], names: set[str]) -> None:
    if set(tensors) != names:
        raise ModelError(
            f"the weights hold tensors {sorted(tensors)}, expected {sorted(names)}; "
            "the file belongs to another head or is damaged, so load it with the matching spec"
        )
