"""The heads' forward pass on numpy: k-NN votes and means, a linear layer, a small MLP.

A vector model's head is one or two matrix products (or a distance matrix and a vote), so
the daemon serves it without torch: these functions reproduce the torch heads of
:mod:`tailord.trainer.knn_classify`, :mod:`tailord.trainer.heads` and
:mod:`tailord.trainer.knn_regress` step by step (the same float32 arithmetic, the same
distance formula as ``torch.cdist``, the same chunking), and ``tests/trainer/test_light.py``
holds them to torch's answers within 1e-6. No torch here: an import-linter contract keeps it
so.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# The same constants as tailord.trainer.neighbours (which needs torch to import).
DISTANCE_EPS = np.float32(1e-6)
MAX_PAIRS = 16_000_000
_NORM_EPS = np.float32(1e-12)  # torch.nn.functional.normalize's default eps
_CDIST_DIRECT = 25  # torch.cdist computes directly up to this many rows, by matmul above

# (neighbours' weights [n, k], their row indices [n, k]) -> one answer per query row
Combine = Callable[[F32, I64], F32]


def normalize(x: F32) -> F32:
    """Rows scaled to unit length, as ``torch.nn.functional.normalize(x, dim=1)``."""
    norm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    unit: F32 = (x / np.maximum(norm, _NORM_EPS)[:, None]).astype(np.float32, copy=False)
    return unit


def cdist(x: F32, y: F32) -> F32:
    """Euclidean distances [len(x), len(y)], computed the way ``torch.cdist`` does."""
    if len(x) > _CDIST_DIRECT or len(y) > _CDIST_DIRECT:
        # torch's "use_mm_for_euclid_dist_if_necessary": one matmul of padded rows.
        x_norm = np.einsum("ij,ij->i", x, x, dtype=np.float32)[:, None]
        y_norm = np.einsum("ij,ij->i", y, y, dtype=np.float32)[:, None]
        x_pad = np.concatenate([x * np.float32(-2), x_norm, np.ones_like(x_norm)], axis=1)
        y_pad = np.concatenate([y, np.ones_like(y_norm), y_norm], axis=1)
        squared = x_pad @ y_pad.T
        by_matmul: F32 = np.sqrt(np.maximum(squared, np.float32(1e-30)))
        return by_matmul
    diff = x[:, None, :] - y[None, :, :]
    direct: F32 = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff, dtype=np.float32))
    return direct


class NearestRows:
    """A k-NN memory's rows, ``k``, the metric and the weighting: the k nearest of a query.

    ``center`` and ``scale`` (trainer/vote.py) standardize the memory and every query
    before the distance; None for none."""

    def __init__(
        self,
        memory: F32,
        k: int,
        metric: str,
        weighting: str,
        center: F32 | None = None,
        scale: F32 | None = None,
    ) -> None:
        self.memory = memory
        self.k = k
        # "auto" is decided per update for a classify memory (trainer/vote.py); a regress
        # memory, with no labels to measure a vote on, keeps cosine.
        self.metric = "cosine" if metric == "auto" else metric
        self.weighting = weighting
        self.center, self.scale = center, scale
        space = scaled(memory, center, scale)
        # Scaled and normalized once here rather than on every predict call.
        self._space = normalize(space) if self.metric == "cosine" else space

    @property
    def rows(self) -> int:
        return int(self.memory.shape[0])

    def lookup(self, x: F32, combine: Combine, width: int) -> F32:
        """``combine`` over each query row's ``k`` nearest rows, a bounded chunk at a time."""
        k = min(self.k, self.rows)
        step = max(1, MAX_PAIRS // max(1, self.rows))
        chunks = [combine(*self.nearest(x[i : i + step], k)) for i in range(0, len(x), step)]
        if not chunks:
            return np.zeros((0, width), dtype=np.float32)[:, :width]
        return np.concatenate(chunks)

    def nearest(self, x: F32, k: int) -> tuple[F32, I64]:
        """The inverse-distance (or uniform) weights and row indices of each row's k nearest,
        nearest first."""
        x = scaled(x, self.center, self.scale)
        if self.metric == "cosine":
            distance = np.float32(1.0) - normalize(x) @ self._space.T
        else:
            distance = cdist(x, self._space)
        distance = np.maximum(distance, np.float32(0.0))
        index = np.argpartition(distance, k - 1, axis=1)[:, :k] if k < self.rows else None
        if index is None:
            index = np.broadcast_to(np.arange(self.rows), distance.shape)
        near = np.take_along_axis(distance, index, axis=1)
        order = np.argsort(near, axis=1, kind="stable")
        index = np.take_along_axis(index, order, axis=1).astype(np.int64)
        nearest = np.take_along_axis(near, order, axis=1)
        if self.weighting == "uniform":
            return np.ones_like(nearest), index
        return (np.float32(1.0) / (nearest + DISTANCE_EPS)).astype(np.float32), index


def scaled(x: F32, center: F32 | None, scale: F32 | None) -> F32:
    """``(x - center) / scale`` in float32 (as torch computes it), or ``x`` for no scaling."""
    if center is None or scale is None:
        return x
    out: F32 = ((x - center) / scale).astype(np.float32, copy=False)
    return out


def cube(weight: F32) -> F32:
    """The vote's kernel on inverse-distance weights: ``w * w * w`` (trainer/vote.py says why;
    torch does the same in knn_classify.py)."""
    out: F32 = weight * weight * weight
    return out


def tally(weight: F32, labels: I64, n_labels: int) -> F32:
    """Each query row's votes per label [n, n_labels]: ``weight`` added at ``labels``."""
    votes = np.zeros((weight.shape[0], n_labels), dtype=np.float32)
    for j in range(weight.shape[1]):  # k is small: one scatter-add per neighbour rank
        np.add.at(votes, (np.arange(weight.shape[0]), labels[:, j]), weight[:, j])
    return votes


def knn_scores(
    rows: NearestRows, targets: I64, x: F32, n_labels: int, balance: F32 | None = None
) -> F32:
    """Per-label scores [n, n_labels]: the neighbours' vote, as ``KnnHead.scores``; each
    neighbour's weight cubed, each label's votes times its ``balance`` weight if given
    (trainer/vote.py), then scaled to sum to 1."""

    def vote(weight: F32, index: I64) -> F32:
        weight = cube(weight)
        votes = tally(weight, targets[index], n_labels)
        if balance is not None:
            votes = votes * balance
            share: F32 = votes / votes.sum(axis=1, keepdims=True, dtype=np.float32)
            return share
        total: F32 = weight.sum(axis=1, keepdims=True, dtype=np.float32)
        return votes / total

    return rows.lookup(x, vote, n_labels)


def knn_means(rows: NearestRows, values: F32, x: F32) -> F32:
    """The neighbours' weighted mean target [n], as ``KnnRegressor.estimate``."""

    def mean(weight: F32, index: I64) -> F32:
        total = (weight * values[index]).sum(axis=1, dtype=np.float32)
        means: F32 = (total / weight.sum(axis=1, dtype=np.float32))[:, None]
        return means

    return rows.lookup(x, mean, 1)[:, 0]


def linear(x: F32, weight: F32, bias: F32) -> F32:
    """``x @ weight.T + bias``: ``torch.nn.Linear``'s forward pass."""
    out: F32 = x @ weight.T + bias
    return out


def softmax(z: F32) -> F32:
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    out: F32 = shifted / shifted.sum(axis=1, keepdims=True, dtype=np.float32)
    return out


def relu(z: F32) -> F32:
    out: F32 = np.maximum(z, np.float32(0.0))
    return out
