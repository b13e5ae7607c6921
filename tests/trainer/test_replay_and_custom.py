"""Replay against forgetting; a user module:factory backbone trains only what it declares."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
import torch

from tailord.trainer.backbones import build_custom
from tailord.trainer.errors import ModelError
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update

Clusters = Callable[..., tuple[npt.NDArray[np.float32], list[str]]]  # see conftest.py
NO_REPLAY = np.zeros((0, 8), dtype=np.float32)
CUSTOM = "tests.trainer.custom_backbone:make"


def accuracy(model: Model, x: npt.NDArray[np.float32], y: list[str]) -> float:
    return sum(p.label == t for p, t in zip(model.predict(x), y, strict=True)) / len(y)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_replay_keeps_base_labels_where_training_without_it_forgets(
    clusters: Clusters, head: str
) -> None:
    x, y = clusters(["a", "b"], 40, seed=1)
    params = UpdateParams(epochs=20, learning_rate=0.05, batch_size=16, seed=2)
    base = run_update(Model.base(ModelSpec(head=head)), x, y, NO_REPLAY, [], params)
    unseen, truth = clusters(["a", "b"], 30, seed=2, spread=1.0)
    assert accuracy(base, unseen, truth) >= 0.95

    new_x, new_y = clusters(["c"], 40, seed=3)
    long = UpdateParams(epochs=40, learning_rate=0.1, batch_size=16, seed=2)
    forgot = run_update(base, new_x, new_y, NO_REPLAY, [], long)
    kept = run_update(base, new_x, new_y, x, y, long)
    assert accuracy(forgot, unseen, truth) < 0.5
    assert accuracy(kept, unseen, truth) >= 0.95
    unseen_c, truth_c = clusters(["c"], 20, seed=4)
    assert accuracy(kept, unseen_c, truth_c) == 1.0


def test_custom_backbone_trains_only_its_declared_parameters(clusters: Clusters) -> None:
    spec = ModelSpec(backbone=CUSTOM, head="linear", updatable=("1.*",))
    x, y = clusters(["a", "b", "c"], 20, seed=1)
    params = UpdateParams(epochs=20, learning_rate=0.05, batch_size=16, seed=1)
    model = run_update(Model.base(spec), x, y, NO_REPLAY, [], params)
    pristine = build_custom(spec)
    state = model.backbone_state
    assert sorted(state) == ["1.bias", "1.weight"]  # only the declared ones are stored
    assert not torch.equal(state["1.weight"], pristine.state_dict()["1.weight"])
    trained = model.backbone.module
    assert trained is not None
    for name, tensor in trained.state_dict().items():
        if name.startswith("0."):  # frozen: exactly as the factory built it
            assert torch.equal(tensor, pristine.state_dict()[name]), name
    assert model.dim == 6  # the head sits on the module's 6 features
    unseen, truth = clusters(["a", "b", "c"], 10, seed=2)
    assert [p.label for p in model.predict(unseen)] == truth
    back = Model.from_bytes(model.to_bytes())
    assert back.predict(unseen) == model.predict(unseen)
    # The same again, the same weights.
    again = run_update(Model.base(spec), x, y, NO_REPLAY, [], params)
    assert all(torch.equal(v, again.backbone_state[k]) for k, v in state.items())


def test_frozen_custom_backbone_feeds_a_knn_head(clusters: Clusters) -> None:
    spec = ModelSpec(backbone=CUSTOM, head="knn")
    model = Model.base(spec)
    x, y = clusters(["a", "b"], 10, seed=1)
    features = model.encode([row.astype("<f4").tobytes() for row in x])
    assert features.shape == (20, 6)
    learned = run_update(model, features, y, np.zeros((0, 6), np.float32), [], UpdateParams())
    assert [p.label for p in learned.predict(x)] == y
    assert learned.backbone.cacheable


@pytest.mark.parametrize(
    ("backbone", "updatable", "match"),
    [
        ("tests.trainer.custom_backbone:nope", (), "cannot be imported"),
        ("tests.trainer.custom_backbone:not_a_module", (), "not a torch.nn.Module"),
        (CUSTOM, ("head.*",), "matches no parameter"),
    ],
)
def test_bad_factories_are_explained(backbone: str, updatable: tuple[str, ...], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        build_custom(ModelSpec(backbone=backbone, head="linear", updatable=updatable))
