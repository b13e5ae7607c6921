"""How a k-NN memory's neighbours vote: the kernel, and whether features are standardized.

Both are measured choices (docs/benchmarks.md, "Personalization scenarios"):

- **A sharp kernel.** A neighbour's vote is its inverse distance *cubed*. With plain inverse
  distance a label's few recent shots are outvoted by the many older rows that crowd the
  next ranks (digits in a user's rotated style: 0.831 → 0.856; three new digits after 280
  base samples: 0.471 → 0.546, in-process over 5 seeds); the cube lets the nearest rows
  decide while keeping ``k`` neighbours to smooth over a single stray one.
- **Standardized features, when the memory says so.** Numeric features of different units
  (wine: proline ~1000 beside hue ~1) let one feature decide every distance; standardizing
  them (the memory's mean and standard deviation) is what a scikit-learn user would write
  (wine stream 0.79 → 0.92). But for features that are already comparable (pixels,
  embeddings) it amplifies near-constant ones and costs accuracy (digits 0.86 → 0.73). So an
  update decides: standardize only when it raises the memory's leave-one-out accuracy
  (balanced over labels) by more than :data:`STANDARDIZE_MARGIN`. The decision is the
  version's state: the center and scale are stored with the memory (``knn.center``,
  ``knn.scale``; identity when not standardized), so serving is deterministic.

Both the numpy path (daemon) and the torch heads (worker) call :func:`fit_scaling`, so the
decision has one source; the vote itself is repeated in npheads.py and heads.py, held equal
by tests/trainer/test_light.py. No torch here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tailord.trainer.npheads import F32, I64, MAX_PAIRS, NearestRows, scaled

# Leave-one-out gain (balanced accuracy, 0..1) standardizing must bring to be chosen: the
# memory's own geometry is the default, and a tie or a hair's gain does not move it (on the
# new-classes digits standardizing wins LOO by 0.003 and loses 6 points on held-out digits).
STANDARDIZE_MARGIN = 0.02
# Bounds an update's leave-one-out cost: at most this many memory rows are the queries.
LOO_QUERIES = 1000
# A feature whose standard deviation is below this is left unscaled (constant pixels).
MIN_STD = np.float32(1e-6)


def cube(weight: F32) -> F32:
    """The vote's kernel on inverse-distance weights: ``w * w * w`` (torch does the same)."""
    out: F32 = weight * weight * weight
    return out


def identity(dim: int) -> tuple[F32, F32]:
    """No standardization: center 0, scale 1."""
    return np.zeros(dim, dtype=np.float32), np.ones(dim, dtype=np.float32)


def standardizer(memory: F32) -> tuple[F32, F32]:
    """The memory's per-feature mean and standard deviation (1 where nearly constant)."""
    center = memory.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = memory.std(axis=0, dtype=np.float64).astype(np.float32)
    scale = np.where(std > MIN_STD, std, np.float32(1.0)).astype(np.float32)
    return center, scale


def fit_scaling(
    memory: F32, targets: I64, k: int, metric: str, weighting: str, seed: int
) -> tuple[F32, F32]:
    """The center and scale this memory votes with: standardized, or the identity."""
    dim = memory.shape[1] if memory.ndim == 2 else 0
    if len(memory) < 3 or len(np.unique(targets)) < 2:
        return identity(dim)
    queries = np.arange(len(memory))
    if len(queries) > LOO_QUERIES:
        queries = np.sort(np.random.default_rng(seed).choice(queries, LOO_QUERIES, replace=False))
    raw = loo_accuracy(memory, targets, queries, k, metric, weighting)
    center, scale = standardizer(memory)
    standardized = loo_accuracy(
        scaled(memory, center, scale), targets, queries, k, metric, weighting
    )
    return (center, scale) if standardized > raw + STANDARDIZE_MARGIN else identity(dim)


def loo_accuracy(
    memory: F32, targets: I64, queries: I64, k: int, metric: str, weighting: str
) -> float:
    """Leave-one-out accuracy of the vote on the memory's rows ``queries``, each label's
    accuracy weighted equally (so a label's few new shots count as much as an old label)."""
    hits = loo_hits(memory, targets, queries, k, metric, weighting)
    return balanced(hits, targets[queries])


def balanced(hits: npt.NDArray[np.bool_], truth: I64) -> float:
    """Accuracy with each label's rows weighing as much as any other label's."""
    return float(np.mean([hits[truth == label].mean() for label in np.unique(truth)]))


def loo_hits(
    memory: F32,
    targets: I64,
    queries: I64,
    k: int,
    metric: str,
    weighting: str,
    center: F32 | None = None,
    scale: F32 | None = None,
) -> npt.NDArray[np.bool_]:
    """Whether the vote of the other rows gets each row of ``queries`` right."""
    # k + 1 neighbours, then each query's own row is dropped from its list.
    rows = NearestRows(memory, min(k + 1, len(memory)), metric, weighting, center, scale)
    n_labels = int(targets.max()) + 1
    hits = np.zeros(len(queries), dtype=bool)
    step = max(1, MAX_PAIRS // max(1, len(memory)))
    for start in range(0, len(queries), step):
        part = queries[start : start + step]
        weight, index = rows.nearest(memory[part], rows.k)
        # Drop the query's own row (or, for duplicates, the last neighbour) to keep k.
        keep = index != part[:, None]
        keep[keep.sum(axis=1) > k, -1] = False
        weight = np.where(keep, cube(weight), np.float32(0.0))
        votes = np.zeros((len(part), n_labels), dtype=np.float32)
        for j in range(index.shape[1]):
            np.add.at(votes, (np.arange(len(part)), targets[index[:, j]]), weight[:, j])
        hits[start : start + len(part)] = votes.argmax(axis=1) == targets[part]
    return hits
