from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import safetensors
import safetensors.torch
import torch

from tailord.trainer.errors import ModelError, UpdateCancelled
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import ProgressEvent, run_update

Clusters = Callable[..., tuple[npt.NDArray[np.float32], list[str]]]  # see conftest.py
NO_REPLAY = np.zeros((0, 8), dtype=np.float32)


def learned(clusters: Clusters, metric: str = "cosine") -> Model:
    x, y = clusters(["a", "b"], 30, seed=1)
    base = Model.base(ModelSpec(head="knn", k=5, metric=metric))
    return run_update(base, x, y, NO_REPLAY, [], UpdateParams())


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_predicts_the_cluster_of_unseen_points(clusters: Clusters, metric: str) -> None:
    model = learned(clusters, metric)
    x, y = clusters(["a", "b"], 20, seed=2)
    predictions = model.predict(x)
    assert [p.label for p in predictions] == y
    assert all(0.5 < p.score <= 1.0 for p in predictions)


def test_exact_match_scores_one(clusters: Clusters) -> None:
    model = Model.base(ModelSpec(k=1))
    model = run_update(
        model, np.eye(8, dtype=np.float32)[:2], ["a", "b"], NO_REPLAY, [], UpdateParams()
    )
    assert model.predict(np.eye(8, dtype=np.float32)[1:2])[0].label == "b"
    assert model.predict(np.eye(8, dtype=np.float32)[1:2])[0].score == pytest.approx(1.0)


def test_update_appends_and_leaves_the_input_model_alone(clusters: Clusters) -> None:
    first = learned(clusters)
    x, y = clusters(["c", "a"], 5, seed=3)
    events: list[ProgressEvent] = []
    second = run_update(first, x, y, NO_REPLAY, [], UpdateParams(), on_progress=events.append)
    assert first.sample_count == 60
    assert first.labels == ("a", "b")
    assert second.sample_count == 70
    assert second.labels == ("a", "b", "c")  # old indices keep their meaning
    assert [e.kind for e in events] == ["began", "epoch"]
    unseen, truth = clusters(["a", "b", "c"], 10, seed=4)
    assert [p.label for p in second.predict(unseen)] == truth


def test_round_trip_gives_identical_predictions(clusters: Clusters) -> None:
    model = learned(clusters)
    back = Model.from_bytes(model.to_bytes())
    assert back.spec == model.spec
    assert back.labels == model.labels
    assert back.dim == model.dim == 8
    assert back.sample_count == model.sample_count
    x, _ = clusters(["a", "b"], 10, seed=5, spread=2.0)
    assert back.predict(x) == model.predict(x)


def test_base_model_round_trips_and_cannot_predict_yet() -> None:
    back = Model.from_bytes(Model.base(ModelSpec(dim=3)).to_bytes())
    assert back.labels == ()
    assert back.dim == 3
    assert back.sample_count == 0
    with pytest.raises(ModelError, match="no version has learned any label yet; drop samples"):
        back.predict(np.zeros((1, 3), dtype=np.float32))


def test_predict_refuses_the_wrong_size(clusters: Clusters) -> None:
    model = learned(clusters)
    with pytest.raises(ModelError, match=r"expected \(n, 8\); pass one row of 8 values"):
        model.predict(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ModelError, match=r"expected \(n, 8\)"):
        model.predict(np.zeros(8, dtype=np.float32))
    assert model.predict(np.zeros((0, 8), dtype=np.float32)) == []


def test_update_refuses_a_size_that_differs_from_the_model(clusters: Clusters) -> None:
    model = learned(clusters)
    with pytest.raises(ModelError, match="have 3 values each, but the model expects 8"):
        run_update(model, np.zeros((1, 3), np.float32), ["a"], NO_REPLAY, [], UpdateParams())
    fixed = Model.base(ModelSpec(dim=4))
    with pytest.raises(ModelError, match="the model expects 4"):
        run_update(fixed, np.zeros((1, 3), np.float32), ["a"], NO_REPLAY, [], UpdateParams())


def test_should_stop_cancels(clusters: Clusters) -> None:
    x, y = clusters(["a"], 3, seed=1)
    with pytest.raises(UpdateCancelled):
        run_update(
            Model.base(ModelSpec()), x, y, NO_REPLAY, [], UpdateParams(), should_stop=lambda: True
        )


def test_update_keeps_its_own_copy_of_the_samples(clusters: Clusters) -> None:
    x, y = clusters(["a", "b"], 5, seed=1)
    model = run_update(Model.base(ModelSpec()), x, y, NO_REPLAY, [], UpdateParams())
    before = model.predict(x)
    x[:] = -x
    assert model.predict(-x) == before


def valid_bytes(clusters: Clusters) -> bytes:
    return learned(clusters).to_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: b"garbage",
        lambda data: bytes(range(256)) * 4,
        lambda data: data[: len(data) // 2],
        lambda data: (2**60).to_bytes(8, "little") + data[8:],
        lambda data: safetensors.torch.save({"x": torch.zeros(2)}),
        lambda data: data.replace(b"tailord.model/1", b"tailord.model/9"),
        lambda data: data.replace(b'\\"knn\\"', b'\\"mlp\\"'),
        lambda data: data.replace(b"knn.targets", b"knn.targetz"),
        lambda data: data.replace(b'[\\"a\\", \\"b\\"]', b'[\\"a\\", \\"a\\"]'),
        lambda data: data.replace(b'[\\"a\\", \\"b\\"]', b'[\\"a\\"]     '),
    ],
)
def test_damaged_weights_raise_model_error(clusters: Clusters, damage: object) -> None:
    data = valid_bytes(clusters)
    assert callable(damage)
    damaged = damage(data)
    assert damaged != data
    with pytest.raises(ModelError):
        Model.from_bytes(damaged)


def test_nan_in_memory_is_refused(clusters: Clusters, tmp_path: Path) -> None:
    model = learned(clusters)
    path = tmp_path / "weights.safetensors"
    path.write_bytes(model.to_bytes())
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = {name: tensor.clone() for name, tensor in model.head.tensors().items()}
    tensors["knn.memory"][0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN or inf"):
        Model.from_bytes(safetensors.torch.save(tensors, metadata=metadata))


def test_an_updates_own_k_changes_only_the_vote(clusters: Clusters) -> None:
    model = learned(clusters)
    one = model.with_k(1)
    assert model.with_k(model.spec.k) is model
    assert (one.spec.k, model.spec.k) == (1, 5)
    assert one.labels == model.labels
    assert torch.equal(one.head.memory, model.head.memory)  # type: ignore[union-attr]
    # One neighbour votes: an exact match of a stored row answers that row's label alone.
    x, y = clusters(["a", "b"], 30, seed=1)
    assert [p.label for p in one.predict(x)] == y
    assert Model.from_bytes(one.to_bytes()).spec.k == 1, "the version's files keep its k"
