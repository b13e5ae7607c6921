"""k-NN memory bounds and weighting; the auto head's switch from k-NN to a trained layer."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
import torch

from tailord.trainer.knn_classify import KnnHead
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update

Clusters = Callable[..., tuple[npt.NDArray[np.float32], list[str]]]  # see conftest.py
NO_REPLAY = np.zeros((0, 8), dtype=np.float32)


def test_knn_memory_is_a_bounded_per_label_reservoir(clusters: Clusters) -> None:
    spec = ModelSpec(head="knn", max_per_label=10)
    model = Model.base(spec)
    for seed in range(5):  # five updates of 20 "a" and 4 "b"
        xa, ya = clusters(["a"], 20, seed=seed)
        xb, yb = clusters(["b"], 4, seed=100 + seed)
        model = run_update(
            model, np.concatenate([xa, xb]), ya + yb, NO_REPLAY, [], UpdateParams(seed=seed)
        )
    head = model.head
    assert isinstance(head, KnnHead)
    assert torch.bincount(head.targets).tolist() == [10, 10]
    assert head.seen.tolist() == [100, 20]
    back = Model.from_bytes(model.to_bytes())
    assert isinstance(back.head, KnnHead)
    assert back.head.seen.tolist() == [100, 20]
    # Algorithm R keeps old rows too: not only the last update's samples survive.
    last, _ = clusters(["a"], 20, seed=4)
    kept_a = head.memory[head.targets == 0]
    from_last = sum(bool((row == torch.from_numpy(last)).all(dim=1).any()) for row in kept_a)
    assert from_last < 10


def test_reservoir_is_deterministic(clusters: Clusters) -> None:
    x, y = clusters(["a"], 50, seed=1)
    spec = ModelSpec(head="knn", max_per_label=7)
    one = run_update(Model.base(spec), x, y, NO_REPLAY, [], UpdateParams(seed=3))
    two = run_update(Model.base(spec), x, y, NO_REPLAY, [], UpdateParams(seed=3))
    assert isinstance(one.head, KnnHead)
    assert isinstance(two.head, KnnHead)
    assert torch.equal(one.head.memory, two.head.memory)


def test_uniform_weighting_counts_votes() -> None:
    memory = torch.tensor([[0.0], [0.1], [5.0], [5.1], [5.2]])
    targets = torch.tensor([0, 0, 1, 1, 1])
    near = torch.tensor([[0.0]])
    uniform = KnnHead(memory, targets, 5, "euclidean", weighting="uniform")
    distance = KnnHead(memory, targets, 5, "euclidean", weighting="distance")
    assert uniform.scores(near, 2).argmax().item() == 1  # 3 votes beat 2
    assert distance.scores(near, 2).argmax().item() == 0  # the exact match dominates
    assert uniform.scores(near, 2)[0].tolist() == pytest.approx([0.4, 0.6])
