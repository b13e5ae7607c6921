"""How a k-NN memory's neighbours vote: the kernel, the space (standardized? which metric?),
and whether each label's votes are balanced by its share of the memory.

All are measured choices (docs/benchmarks.md, "Personalization scenarios"):

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
  (balanced over labels) by more than :data:`STANDARDIZE_MARGIN`.
- **The metric, with ``metric = "auto"``** (the default). Cosine on standardized features
  measures only a sample's direction from the memory's mean, not how far it lies: on the
  wine stream cosine reaches 0.910 and "auto" 0.928 (scikit-learn's standardized 5-NN
  0.933, through the daemon over 5 seeds). So "auto" lets the same leave-one-out pass choose
  the space among cosine on raw features, cosine standardized and euclidean standardized
  (ties to cosine); a configured cosine or euclidean is kept, raw or standardized.
- **Balanced votes, when the memory says so.** A label with 40 rows has eight times the
  chances of a label with 5 to sit among a query's nearest rows, whatever the query: beside
  40 of each old digit, 5 shots of three new digits reached 0.563 of the new digits, where
  the ``linear`` head reaches 0.661 (through the daemon, 5 seeds). Dividing each label's
  votes by its rows in the memory turns the vote into a per-label density (the k-NN estimate
  of p(x | label)) and the answer into the label the query is most typical of: 0.788 of the
  new digits, 0.973 of the old (0.985 before). But where the counts are the labels' true
  frequencies (a stream), the plain vote is the better guess: the wine stream loses 0.7
  points always balanced. So an update balances only when that raises the memory's
  leave-one-out accuracy (balanced over labels) by more than :data:`BALANCE_MARGIN`; a
  memory with equal counts never changes.

The decisions are the version's state (:class:`Space`): the center, scale, metric and
balance are stored with the memory (``knn.center``, ``knn.scale``: identity when not
standardized; ``knn.metric``: an index of :data:`METRICS`; ``knn.balance``: 1 or 0), so
serving is deterministic; older files without ``knn.metric`` vote with the configured metric
("auto" meaning cosine there), without ``knn.balance`` unbalanced. Both the numpy path
(daemon) and the torch heads (worker) call :func:`fit_space`, so the decision has one source;
the vote itself is repeated in npheads.py and knn_classify.py, held equal by
tests/trainer/test_light.py. No torch here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from tailord.trainer.npheads import F32, I64, MAX_PAIRS, NearestRows, cube, scaled, tally

# A memory's chosen metric is stored as its index here (``knn.metric``, int64 [1]).
METRICS = ("cosine", "euclidean")

# Leave-one-out gain (balanced accuracy, 0..1) standardizing must bring to be chosen: the
# memory's own geometry is the default, and a tie or a hair's gain does not move it (on the
# new-classes digits standardizing wins LOO by 0.003 and loses 6 points on held-out digits).
STANDARDIZE_MARGIN = 0.02
# Leave-one-out gain balancing must bring. Three new digits' 5 shots gain 0.025 to 0.095;
# on the wine and breast_cancer streams the gain is at most 0.024 and balancing there does
# not move the streams' accuracy at a margin of 0, 0.01 or 0.02 (in-process, 5 seeds).
BALANCE_MARGIN = 0.01
# Bounds an update's leave-one-out cost: at most this many memory rows are the queries.
LOO_QUERIES = 1000
# A feature whose standard deviation is below this is left unscaled (constant pixels).
MIN_STD = np.float32(1e-6)


def identity(dim: int) -> tuple[F32, F32]:
    """No standardization: center 0, scale 1."""
    return np.zeros(dim, dtype=np.float32), np.ones(dim, dtype=np.float32)


def standardizer(memory: F32) -> tuple[F32, F32]:
    """The memory's per-feature mean and standard deviation (1 where nearly constant)."""
    center = memory.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = memory.std(axis=0, dtype=np.float64).astype(np.float32)
    scale = np.where(std > MIN_STD, std, np.float32(1.0)).astype(np.float32)
    return center, scale


def raw_metric(metric: str) -> str:
    """The metric ``metric`` votes with on raw features: ``"auto"`` starts as cosine."""
    return "cosine" if metric == "auto" else metric


def metric_code(metric: str) -> npt.NDArray[np.int64]:
    """How a memory's chosen metric is stored: ``knn.metric``."""
    return np.array([METRICS.index(metric)], dtype=np.int64)


class Space(NamedTuple):
    """How a memory votes: its standardization, its metric, and whether votes are balanced."""

    center: F32
    scale: F32
    metric: str
    balance: bool


def fit_space(memory: F32, targets: I64, k: int, metric: str, weighting: str, seed: int) -> Space:
    """The center, scale, metric and balance this memory votes with.

    An explicit ``metric`` is kept: raw or standardized. ``"auto"`` also lets standardized
    features switch to euclidean distance (cosine on standardized features ignores how far
    a sample lies from the mean: wine stream 0.910 cosine, 0.928 "auto", 5 seeds). Balance
    is then decided in the chosen space, from the same leave-one-out votes."""
    dim = memory.shape[1] if memory.ndim == 2 else 0
    base = raw_metric(metric)
    if len(memory) < 3 or len(np.unique(targets)) < 2:
        return Space(*identity(dim), base, balance=False)
    queries = np.arange(len(memory))
    if len(queries) > LOO_QUERIES:
        queries = np.sort(np.random.default_rng(seed).choice(queries, LOO_QUERIES, replace=False))
    truth = targets[queries]
    raw = loo_votes(memory, targets, queries, k, base, weighting)
    center, scale = standardizer(memory)
    space = scaled(memory, center, scale)
    # Ties go to the first: the configured (or cosine) metric.
    candidates = METRICS if metric == "auto" else (base,)
    votes = [loo_votes(space, targets, queries, k, m, weighting) for m in candidates]
    scores = [balanced(v.argmax(axis=1) == truth, truth) for v in votes]
    best = int(np.argmax(scores))
    if scores[best] > balanced(raw.argmax(axis=1) == truth, truth) + STANDARDIZE_MARGIN:
        return Space(center, scale, candidates[best], balance_wins(votes[best], targets, queries))
    return Space(*identity(dim), base, balance=balance_wins(raw, targets, queries))


def balance_wins(votes: F32, targets: I64, queries: I64) -> bool:
    """Whether dividing each label's leave-one-out ``votes`` by its rows in the memory raises
    accuracy by more than :data:`BALANCE_MARGIN`.

    The weights are those the version will serve with (every row counted). Not counting the
    query's own row would be the exact leave-one-out, but it favours the query's own label
    by n / (n - 1) on every row, so equal counts (where balancing changes nothing served)
    measured a gain."""
    truth = targets[queries]
    weighted = votes * label_weights(targets, votes.shape[1])
    plain = balanced(votes.argmax(axis=1) == truth, truth)
    return balanced(weighted.argmax(axis=1) == truth, truth) > plain + BALANCE_MARGIN


def label_weights(targets: I64, n_labels: int) -> F32:
    """A balanced vote's weight per label: one over its rows in the memory (1 for none)."""
    counts = np.bincount(targets, minlength=n_labels)[:n_labels].astype(np.float32)
    weights: F32 = (np.float32(1.0) / np.maximum(counts, np.float32(1.0))).astype(np.float32)
    return weights


def balanced(hits: npt.NDArray[np.bool_], truth: I64) -> float:
    """Accuracy with each label's rows weighing as much as any other label's."""
    return float(np.mean([hits[truth == label].mean() for label in np.unique(truth)]))


def loo_votes(memory: F32, targets: I64, queries: I64, k: int, metric: str, weighting: str) -> F32:
    """The vote of the other rows for each row of ``queries`` [len(queries), labels]."""
    # k + 1 neighbours, then each query's own row is dropped from its list.
    rows = NearestRows(memory, min(k + 1, len(memory)), metric, weighting)
    n_labels = int(targets.max()) + 1
    out = np.zeros((len(queries), n_labels), dtype=np.float32)
    step = max(1, MAX_PAIRS // max(1, len(memory)))
    for start in range(0, len(queries), step):
        part = queries[start : start + step]
        weight, index = rows.nearest(memory[part], rows.k)
        # Drop the query's own row (or, for duplicates, the last neighbour) to keep k.
        keep = index != part[:, None]
        keep[keep.sum(axis=1) > k, -1] = False
        weight = np.where(keep, cube(weight), np.float32(0.0))
        out[start : start + len(part)] = tally(weight, targets[index], n_labels)
    return out
