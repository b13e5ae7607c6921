"""The ``auto`` head's decision: k-NN or a linear layer, measured on the memory each update.

Counting samples per label (the old rule: linear once every label had ``auto_min_samples``)
was wrong both ways: a user's 5 shots of a new style are outnumbered by older rows, so the
linear layer answers and loses them (digits in a rotated style: auto 0.639 where its k-NN
made 0.842); and with 8 texts per intent the k-NN answered though the linear layer was
better (BANKING77: 0.792 against 0.825). So each update measures both on the whole memory,
cross-validated on the same folds (:data:`FOLDS`, each label's rows dealt round-robin across
them from ``seed``; :data:`REPEATS` dealings): the k-NN's vote (its scaling and metric:
trainer/vote.py) and a linear layer, each learning from the other folds, both balanced over
labels, on the same rows. A fold's layer takes as many optimizer steps as the whole memory's
would; a fold's k-NN votes as the memory will answer (balanced by its fold's label counts
when the memory balances: trainer/vote.py). The linear layer answers only if it scores
higher. The same folds for both matter: a leave-one-out k-NN (all rows but one) against a
layer trained on two thirds favoured the k-NN, and with 8 texts per intent it kept its k-NN
on two seeds of three where the layer was 1.5 points better.
Measured on the whole memory, never on "this update's samples", so the same samples learned
in one update or five give the same decision.

The decision is the version's state without a new tensor: a version whose k-NN answers
stores no linear layer (the AutoHead answers with its memory when the layer does not cover
every label, as before), so serving on numpy or torch needs no change. The chosen linear
layer is trained from a fresh seeded start on the whole memory each update, for the same
reason: its result must not depend on how updates were split.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from tailord.trainer.heads import LinearHead
from tailord.trainer.knn_classify import KnnHead
from tailord.trainer.npheads import NearestRows, knn_scores
from tailord.trainer.vote import balanced, label_weights

Rows = npt.NDArray[np.float32]
# (rows, targets) -> a trained layer's predicted label index for each row of ``query``
FitPredict = Callable[[Rows, torch.Tensor, Rows], npt.NDArray[np.int64]]

# Three folds: each fold's layer still trains on two thirds of a label's rows (5 of 8 shots).
FOLDS = 3
# Dealings of the rows into folds, each a whole cross-validation: one dealing's luck decided
# BANKING77's 8 shots for the k-NN in 1 row order of 12 (the layer scores 1.3 points higher).
REPEATS = 2
# Bounds the cross-validation's cost: at most this many memory rows are held out in all.
CV_ROWS = 1000


def folds(targets: npt.NDArray[np.int64], seed: int) -> npt.NDArray[np.int64]:
    """Each row's fold: a label's rows, in a seeded order, dealt round-robin to the folds."""
    order = np.random.default_rng(seed).permutation(len(targets))
    fold = np.zeros(len(targets), dtype=np.int64)
    dealt: dict[int, int] = {}
    for row in order.tolist():
        label = int(targets[row])
        fold[row] = dealt.get(label, 0) % FOLDS
        dealt[label] = dealt.get(label, 0) + 1
    return fold


def linear_wins(knn: KnnHead, n_labels: int, fit_predict: FitPredict, seed: int) -> bool:
    """Whether the linear layer's cross-validated accuracy beats the k-NN's on the memory of
    ``knn``: the same folds and rows for both, balanced over labels, :data:`REPEATS` dealings."""
    memory, targets = knn.memory.numpy(), knn.targets.numpy()
    if len(memory) < FOLDS or len(np.unique(targets)) < 2:
        return False
    rows = np.arange(len(memory))
    if len(rows) > CV_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, CV_ROWS, replace=False))
    center = None if knn.center is None else knn.center.numpy()
    scale = None if knn.scale is None else knn.scale.numpy()
    truth = targets[rows]
    margin = 0.0
    for repeat in range(REPEATS):
        fold = folds(targets, seed + repeat)
        knn_hits = np.zeros(len(rows), dtype=bool)
        linear_hits = np.zeros(len(rows), dtype=bool)
        for f in range(FOLDS):
            held = fold[rows] == f
            train = fold != f
            if not held.any() or not train.any():
                continue
            query = memory[rows[held]]
            # Both parts learn from the same two thirds: a leave-one-out k-NN learns from all
            # but one row and so looked better than the layer it was compared with.
            near = NearestRows(memory[train], knn.k, knn.metric, knn.weighting, center, scale)
            balance = label_weights(targets[train], n_labels) if knn.balance else None
            scores = knn_scores(near, targets[train], query, n_labels, balance)
            knn_hits[held] = scores.argmax(axis=1) == targets[rows[held]]
            predicted = fit_predict(memory[train], knn.targets[train], query)
            linear_hits[held] = predicted == targets[rows[held]]
        margin += balanced(linear_hits, truth) - balanced(knn_hits, truth)
    return margin > 0.0


def layer_predict(head: LinearHead, query: Rows, n_labels: int) -> npt.NDArray[np.int64]:
    with torch.no_grad():
        scores = head.scores(torch.from_numpy(query), n_labels)
    predicted: npt.NDArray[np.int64] = scores.argmax(dim=1).numpy().astype(np.int64)
    return predicted
