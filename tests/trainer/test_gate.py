"""The gate rejects a candidate that learned wrong labels and promotes a sound one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from tailord.trainer.errors import ModelError
from tailord.trainer.gate import GateParams, canary_noise, evaluate, split_holdout
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update

Clusters = Callable[..., tuple[npt.NDArray[np.float32], list[str]]]  # see conftest.py
NO_REPLAY = np.zeros((0, 8), dtype=np.float32)
PARAMS = UpdateParams(epochs=30, learning_rate=0.05, batch_size=16, seed=1)


@pytest.mark.parametrize("head", ["linear", "mlp", "knn"])
def test_gate_rejects_a_candidate_trained_on_mislabelled_samples(
    clusters: Clusters, head: str
) -> None:
    x, y = clusters(["a", "b"], 40, seed=1)
    current = run_update(Model.base(ModelSpec(head=head)), x, y, NO_REPLAY, [], PARAMS)
    canary = clusters(["a", "b"], 20, seed=2)
    # Samples of b, filed under a: the user's mistake.
    wrong_x, _ = clusters(["b"], 60, seed=3)
    wrong_y = ["a"] * 60
    held = split_holdout(wrong_y, 0.2, seed=0)
    train = [i for i in range(60) if i not in held]
    candidate = run_update(current, wrong_x[train], [wrong_y[i] for i in train], x, y, PARAMS)
    result = evaluate(
        candidate, current, (wrong_x[held], [wrong_y[i] for i in held]), canary, GateParams()
    )
    assert not result.promote
    assert "canary accuracy fell" in result.reason
    assert result.canary_current == 1.0
    assert result.canary_candidate is not None
    assert result.canary_candidate < 0.9


@pytest.mark.slow
def test_gate_promotes_a_sound_candidate(clusters: Clusters) -> None:
    x, y = clusters(["a", "b"], 40, seed=1)
    current = run_update(Model.base(ModelSpec(head="linear")), x, y, NO_REPLAY, [], PARAMS)
    new_x, new_y = clusters(["c"], 30, seed=4)
    held = split_holdout(new_y, 0.2, seed=0)
    assert len(held) == 6
    train = [i for i in range(30) if i not in held]
    candidate = run_update(current, new_x[train], [new_y[i] for i in train], x, y, PARAMS)
    result = evaluate(
        candidate,
        current,
        (new_x[held], [new_y[i] for i in held]),
        clusters(["a", "b"], 20, seed=2),
        GateParams(),
    )
    assert result.promote, result.reason
    assert result.holdout_current == 0.0  # the current version does not know c
    assert result.holdout_candidate == 1.0
    assert result.holdout_samples == 6
    assert result.canary_samples == 40


def test_holdout_keeps_a_few_shots_for_training() -> None:
    labels = ["a"] * 4 + ["b"] * 10
    held = split_holdout(labels, 0.2, seed=0)
    assert len(held) == 2
    assert all(labels[i] == "b" for i in held)
    assert split_holdout(labels, 0.2, seed=0) == held


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"holdout": 1.0}, "holdout = 1.0: must be a number <= 0.9; for example holdout = 0.2"),
        ({"max_regression": -0.1}, "max_regression = -0.1: must be a number >= 0.0"),
        ({"canary": -1}, "canary = -1: must be an integer >= 0"),
        ({"enabled": "yes"}, 'enabled = "yes": must be true or false, not a string'),
        ({"holdouts": 0.1}, "unknown key 'holdouts'"),
    ],
)
def test_bad_gate_params_are_refused(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        GateParams.from_dict(fields)


def test_the_canary_allowance_is_the_sets_own_noise_and_shrinks_as_it_grows() -> None:
    # 4 of 30 lost (the current version right, the candidate wrong), none gained: 1.645 x 2 / 30.
    lost = [False] * 4 + [True] * 26
    assert canary_noise(lost, [True] * 30) == pytest.approx(0.10967, abs=1e-5)
    # The same 13-point drop on 300 samples: the allowance is a third as large, and with
    # max_regression 0.05 no longer covers it.
    many = [False] * 40 + [True] * 260
    assert canary_noise(many, [True] * 300) == pytest.approx(0.03468, abs=1e-5)
    assert 0.05 + canary_noise(lost, [True] * 30) > 4 / 30 > 0.05 + canary_noise(many, [True] * 300)
    # Changes both ways count (b + c), not only the losses; nothing changed, nothing allowed.
    assert canary_noise([True, False], [False, True]) == pytest.approx(1.645 * 2**0.5 / 2)
    assert canary_noise([True] * 5, [True] * 5) == 0.0
    assert canary_noise([], []) == 0.0
