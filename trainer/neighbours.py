"""The memory behind both k-NN heads: rows, and the k nearest of them to a query.

:class:`~tailord.trainer.knn_classify.KnnHead` votes over its neighbours' labels,
:class:`~tailord.trainer.knn_regress.KnnRegressor` averages their targets; what they share
(the memory's checks, the distance, the weighting and the bounded work per call) is here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tailord.trainer.errors import ModelError

# Inverse-distance weights: an exact match dominates the vote instead of dividing by zero.
DISTANCE_EPS = 1e-6
# Bounds the [queries, memory] distance matrix built at once (~64 MiB of float32).
MAX_PAIRS = 16_000_000

# (neighbours' weights [n, k], their row indices [n, k]) -> one answer per query row
Combine = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Neighbours:
    """Rows kept as they came; ``k``, the metric and the weighting of a lookup."""

    def __init__(
        self,
        memory: torch.Tensor,
        k: int,
        metric: str,
        weighting: str,
        center: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> None:
        if memory.dtype != torch.float32 or memory.ndim != 2:
            raise ModelError(
                f"the k-NN memory is {memory.dtype} {tuple(memory.shape)}, not float32 [n, dim]; "
                "restore the version's weights file from a good copy"
            )
        self.memory = memory
        self.k = k
        # "auto" is decided per update for a classify memory (trainer/vote.py); a regress
        # memory, with no labels to measure a vote on, keeps cosine.
        self.metric = "cosine" if metric == "auto" else metric
        self.weighting = weighting
        # Standardizes memory and queries (trainer/vote.py); None for none.
        self.center, self.scale = center, scale
        space = self._scaled(memory)
        # Scaled and normalized once here rather than on every predict call.
        self._space = nn.functional.normalize(space, dim=1) if self.metric == "cosine" else space

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        if self.center is None or self.scale is None:
            return x
        return (x - self.center) / self.scale

    def _per_row(self, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``tensor``, if it holds one ``dtype`` value per memory row (a row's target)."""
        if tensor.dtype != dtype or tuple(tensor.shape) != (self.memory.shape[0],):
            raise ModelError(
                f"the k-NN targets are {tensor.dtype} {tuple(tensor.shape)}, not "
                f"{str(dtype).removeprefix('torch.')} [{self.memory.shape[0]}]; "
                "restore the version's weights file from a good copy"
            )
        return tensor

    @property
    def sample_count(self) -> int:
        return int(self.memory.shape[0])

    @property
    def dim(self) -> int:
        return int(self.memory.shape[1])

    def _lookup(self, x: torch.Tensor, combine: Combine, empty: torch.Tensor) -> torch.Tensor:
        """``combine`` over each query row's ``k`` nearest rows, a bounded chunk at a time."""
        k = min(self.k, self.sample_count)
        rows = max(1, MAX_PAIRS // max(1, self.sample_count))
        chunks = [combine(*self._nearest(part, k)) for part in torch.split(x, rows)]
        return torch.cat(chunks) if chunks else empty

    def _nearest(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._scaled(x)
        if self.metric == "cosine":
            distance = 1.0 - nn.functional.normalize(x, dim=1) @ self._space.T
        else:
            distance = torch.cdist(x, self._space)
        nearest, index = torch.topk(distance.clamp_min(0.0), k, dim=1, largest=False)
        if self.weighting == "uniform":
            return torch.ones_like(nearest), index
        return 1.0 / (nearest + DISTANCE_EPS), index
