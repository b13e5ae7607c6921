"""After the gate passes, a trained head is published refitted with the held-out samples,
unless that refit fails the canary check (then the judged candidate is published)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import safetensors.numpy

from tailord.trainer.gate import GateParams, evaluate
from tailord.trainer.model import Model
from tailord.trainer.refit import learn_held_out
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update

Clusters = Callable[..., tuple[npt.NDArray[np.float32], list[str]]]  # see conftest.py
PARAMS = UpdateParams(epochs=20, learning_rate=0.05, batch_size=16, seed=1)


def _weights(model: Model) -> dict[str, npt.NDArray[np.generic]]:
    # Tensors only: the metadata's key order is not stable.
    return safetensors.numpy.load(model.to_bytes())


def _same(a: dict[str, npt.NDArray[np.generic]], b: dict[str, npt.NDArray[np.generic]]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _current(clusters: Clusters) -> tuple[Model, tuple[npt.NDArray[np.float32], list[str]]]:
    x, y = clusters(["a", "b"], 30, seed=1)
    empty = np.zeros((0, 8), np.float32)
    return run_update(Model.base(ModelSpec(head="linear")), x, y, empty, [], PARAMS), (x, y)


def test_a_passing_candidate_is_published_trained_on_the_held_out_samples_too(
    clusters: Clusters,
) -> None:
    current, replay = _current(clusters)
    new_x, new_y = clusters(["c"], 10, seed=4)
    train, held = (new_x[:8], new_y[:8]), (new_x[8:], new_y[8:])
    canary = clusters(["a", "b"], 10, seed=2)
    judged = run_update(current, *train, *replay, PARAMS)
    verdict = evaluate(judged, current, held, canary, GateParams())
    assert verdict.promote, verdict.reason

    published, final = learn_held_out(
        current, judged, current, verdict, train, held, replay, canary, PARAMS, GateParams()
    )

    # The very model the same training gives on all ten shots: same start, replay and seed.
    expected = run_update(current, new_x, new_y, *replay, PARAMS)
    assert _same(_weights(published), _weights(expected))
    assert not _same(_weights(published), _weights(judged))
    assert final.promote
    assert final.holdout_candidate == verdict.holdout_candidate  # judged: the refit saw them
    assert "published refitted on all 10 new samples" in final.reason
    assert final.reason.startswith(verdict.reason)


def test_a_refit_that_fails_the_canary_publishes_the_judged_candidate(
    clusters: Clusters,
) -> None:
    current, replay = _current(clusters)
    train = clusters(["c"], 8, seed=4)
    # Held out: pictures of b filed under c, many of them. The judged candidate never
    # learned them, so it passes (the current version gets none of them right either).
    wrong_x, _ = clusters(["b"], 60, seed=5)
    held = (wrong_x, ["c"] * 60)
    canary = clusters(["a", "b"], 10, seed=2)
    judged = run_update(current, *train, *replay, PARAMS)
    verdict = evaluate(judged, current, held, canary, GateParams())
    assert verdict.promote, verdict.reason

    published, final = learn_held_out(
        current, judged, current, verdict, train, held, replay, canary, PARAMS, GateParams()
    )

    assert published is judged
    assert final.promote
    assert "failed its canary check (canary accuracy fell" in final.reason


def test_nothing_held_out_or_a_rejected_candidate_is_left_as_it_is(clusters: Clusters) -> None:
    current, replay = _current(clusters)
    train = clusters(["c"], 8, seed=4)
    empty = (np.zeros((0, 8), np.float32), [])
    judged = run_update(current, *train, *replay, PARAMS)
    verdict = evaluate(judged, current, empty, empty, GateParams())
    published, final = learn_held_out(
        current, judged, current, verdict, train, empty, replay, empty, PARAMS, GateParams()
    )
    assert published is judged
    assert final == verdict


def test_a_memory_head_appends_its_held_out_shots(clusters: Clusters) -> None:
    x, y = clusters(["a", "b"], 10, seed=1)
    empty = (np.zeros((0, 8), np.float32), [])
    current = run_update(Model.base(ModelSpec(head="knn")), x, y, empty[0], [], PARAMS)
    new_x, new_y = clusters(["c"], 5, seed=4)
    train, held = (new_x[:4], new_y[:4]), (new_x[4:], new_y[4:])
    judged = run_update(current, *train, *empty, PARAMS)
    verdict = evaluate(judged, current, held, empty, GateParams())
    published, final = learn_held_out(
        current, judged, current, verdict, train, held, empty, empty, PARAMS, GateParams()
    )
    assert (judged.sample_count, published.sample_count) == (24, 25)
    assert final == verdict
