"""A k-NN update on numpy (knn_memory.appended) against torch's run_update."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from tailord.trainer.errors import ModelError
from tailord.trainer.knn_memory import appended
from tailord.trainer.light import LightModel
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update

Clusters = Callable[..., tuple[npt.NDArray[np.float32], list[str]]]  # see conftest.py
NO_REPLAY = np.zeros((0, 8), dtype=np.float32)


def both(
    spec: ModelSpec, batches: list[tuple[npt.NDArray[np.float32], list[str]]]
) -> tuple[Model, LightModel]:
    model, light = Model.base(spec), LightModel.base(spec)
    for x, y in batches:
        model = run_update(model, x, y, NO_REPLAY, [], UpdateParams())
        light = appended(light, x, y)
    return model, light


@pytest.mark.parametrize("regress", [False, True])
def test_within_bounds_the_file_is_torchs(clusters: Clusters, regress: bool) -> None:
    spec = ModelSpec(task="regress" if regress else "classify")
    first, second = clusters(["a", "b"], 10, seed=1), clusters(["c", "a"], 4, seed=2)
    if regress:
        first = (first[0], [f"{v:.2f}" for v in first[0][:, 0]])
        second = (second[0], [f"{v:.2f}" for v in second[0][:, 0]])
    model, light = both(spec, [first, second])
    again = LightModel.from_bytes(model.to_bytes())
    assert light.labels == again.labels
    assert light.dim == again.dim == 8
    assert light.sample_count == model.sample_count == 28
    assert set(light.arrays) == set(again.arrays)
    for name, array in again.arrays.items():
        np.testing.assert_array_equal(light.arrays[name], array, err_msg=name)
    unseen, _ = clusters(["a", "b", "c"], 5, seed=3)
    if regress:
        assert [e.value for e in light.estimate(unseen)] == pytest.approx(
            [e.value for e in model.estimate(unseen)], abs=1e-5
        )
    else:
        assert [p.label for p in light.predict(unseen)] == [p.label for p in model.predict(unseen)]


def test_a_full_label_keeps_a_seeded_reservoir(clusters: Clusters) -> None:
    spec = ModelSpec(max_per_label=5)
    x, y = clusters(["a", "b"], 12, seed=4)
    light = appended(appended(LightModel.base(spec), x[:3], y[:3]), x[3:], y[3:])
    targets = light.arrays["knn.targets"]
    assert np.bincount(targets).tolist() == [5, 5]  # bounded per label
    assert light.arrays["knn.seen"].tolist() == [12, 12]  # yet every offer counted
    memory = light.arrays["knn.memory"]
    # Every kept row is one that was offered, under its own label.
    for row, target in zip(memory, targets, strict=True):
        match = np.flatnonzero((x == row).all(axis=1))
        assert len(match) == 1
        assert y[match[0]] == light.labels[target]
    again = appended(appended(LightModel.base(spec), x[:3], y[:3]), x[3:], y[3:])
    np.testing.assert_array_equal(again.arrays["knn.memory"], memory)  # seeded


def test_the_regress_reservoir_is_bounded(clusters: Clusters) -> None:
    spec = ModelSpec(task="regress", max_memory=7)
    x, _ = clusters(["a"], 20, seed=5)
    light = appended(LightModel.base(spec), x, [f"{i}" for i in range(20)])
    assert light.sample_count == 7
    assert light.arrays["knn.seen"].tolist() == [20]


def test_a_wrong_width_is_refused(clusters: Clusters) -> None:
    x, y = clusters(["a"], 3, seed=6)
    light = appended(LightModel.base(ModelSpec()), x, y)
    with pytest.raises(ModelError, match="expects 8"):
        appended(light, np.ones((1, 4), np.float32), ["a"])


def test_a_trained_head_is_not_appended_to() -> None:
    with pytest.raises(ModelError, match="use run_update"):
        appended(LightModel.base(ModelSpec(head="linear")), np.ones((1, 8), np.float32), ["a"])


def test_a_relabelled_sample_keeps_one_row(clusters: Clusters) -> None:
    x, y = clusters(["a", "b"], 4, seed=7)
    light = appended(LightModel.base(ModelSpec(k=1)), x, y)
    again = appended(light, x[:1], ["b"])  # the first "a" sample, now labelled "b"
    assert again.sample_count == 8  # replaced, not added
    assert again.predict(x[:1])[0].label == "b"
    assert np.bincount(again.arrays["knn.targets"]).tolist() == [3, 5]
