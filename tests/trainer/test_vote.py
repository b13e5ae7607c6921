"""The k-NN vote (trainer/vote.py): its kernel, the standardization decision, pinned results.

Pinned figures are exact on purpose: a refactor that changes how neighbours vote changes
them, and must then say so (and update docs/benchmarks.md) rather than drift silently.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch
from sklearn.datasets import load_digits, load_wine

from tailord.trainer.errors import ModelError
from tailord.trainer.knn_memory import appended
from tailord.trainer.light import LightModel
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update
from tailord.trainer.vote import METRICS, fit_space, identity

NO_REPLAY = np.zeros((0, 3), dtype=np.float32)
Rows = npt.NDArray[np.float32]


def units(seed: int, n: int = 60) -> tuple[Rows, list[str]]:
    """Two labels told apart by a small feature, beside a huge one that is pure noise: the
    kind of data (wine's proline beside its hue) where only standardized distances work."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    small = label + rng.normal(0, 0.2, n)
    huge = rng.normal(1000, 300, n)
    other = rng.normal(5, 1, n)
    x = np.stack([small, huge, other], axis=1).astype(np.float32)
    return x, [("a", "b")[v] for v in label]


def test_the_nearest_row_outvotes_several_farther_ones() -> None:
    # One row of "b" at distance 1, four rows of "a" at distance 2: plain inverse distance
    # gives a 4 * 0.5 = 2.0 against 1.0; cubed, a has 4 * 0.125 = 0.5 against b's 1.0.
    memory = np.array([[1, 0], [2, 0], [2, 0.0001], [2, -0.0001], [-2, 0]], dtype=np.float32)
    spec = ModelSpec(head="knn", metric="euclidean", k=5, dim=2)
    light = appended(LightModel.base(spec), memory, ["b", "a", "a", "a", "a"])
    answer = light.rank_encoded(np.zeros((1, 2), dtype=np.float32), 2)[0]
    assert [p.label for p in answer] == ["b", "a"]
    assert (
        answer[0].score == np.float32(1.0) / np.float32(1.5) or abs(answer[0].score - 2 / 3) < 1e-5
    )


def test_standardizing_is_chosen_where_units_differ_and_not_on_pixels() -> None:
    x, y = units(seed=1)
    targets = np.array([0 if v == "a" else 1 for v in y], dtype=np.int64)
    center, scale, metric, _ = fit_space(x, targets, 5, "cosine", "distance", seed=0)
    assert metric == "cosine"  # configured: kept
    assert scale[1] > 100  # standardized: the noisy feature no longer decides
    np.testing.assert_allclose(center, x.mean(axis=0), rtol=1e-5)
    digits = load_digits()
    pixels = digits.data[:300].astype(np.float32)
    center, scale, metric, balance = fit_space(
        pixels, digits.target[:300], 5, "auto", "distance", seed=0
    )
    assert not balance  # about 30 rows of each digit: nothing to balance
    assert metric == "cosine"
    for got, want in zip((center, scale), identity(64), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_standardized_memory_answers_the_same_on_numpy_and_torch() -> None:
    spec = ModelSpec(head="knn", metric="cosine")
    x, y = units(seed=2)
    model = run_update(Model.base(spec), x, y, NO_REPLAY, [], UpdateParams())
    light = appended(LightModel.base(spec), x, y)
    assert float(light.arrays["knn.scale"][1]) > 100
    np.testing.assert_array_equal(light.arrays["knn.center"], model.head.tensors()["knn.center"])
    query, truth = units(seed=3, n=40)
    with torch.no_grad():
        want = model.rank_encoded(model.rows(query), 2)
    got = light.rank_encoded(light.rows(query), 2)
    for w, g in zip(want, got, strict=True):
        assert [p.label for p in g] == [p.label for p in w]
        np.testing.assert_allclose([p.score for p in g], [p.score for p in w], atol=1e-6)
    again = LightModel.from_bytes(light.to_bytes())
    accuracy = np.mean([p.label == t for p, t in zip(again.predict(query), truth, strict=True)])
    assert accuracy == 0.95  # pinned
    center, scale = identity(3)
    raw = LightModel(
        spec,
        light.labels,
        3,
        light.sample_count,
        {**light.arrays, "knn.center": center, "knn.scale": scale},
    )
    hits = [p.label == t for p, t in zip(raw.predict(query), truth, strict=True)]
    assert np.mean(hits) == 0.875  # pinned: the same memory on raw distances, noise decides more


def test_the_same_samples_in_1_2_or_5_updates_give_the_same_answers() -> None:
    x, y = units(seed=4, n=100)
    query = units(seed=5, n=50)[0]
    spec = ModelSpec(head="knn")
    answers = []
    for parts in (1, 2, 5):
        light = LightModel.base(spec)
        for rows, names in zip(
            np.array_split(x, parts), np.array_split(np.array(y), parts), strict=True
        ):
            light = appended(light, rows, list(names))
        answers.append([(p.label, p.score) for p in light.predict(query)])
    assert answers[0] == answers[1] == answers[2]


def rot(a: Rows) -> Rows:
    return np.ascontiguousarray(np.rot90(a.reshape(-1, 8, 8), 1, axes=(1, 2)).reshape(-1, 64))


def test_pinned_accuracy_on_digits_in_a_users_style() -> None:
    # The bench's style scenario, small: 20 standard digits per class, then 3 rotated shots
    # per class; accuracy on 300 rotated and 300 standard held-out digits.
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    base = [i for c in range(10) for i in np.flatnonzero(y == c)[:20]]
    shots = [i for c in range(10) for i in np.flatnonzero(y == c)[20:23]]
    test = np.arange(1000, 1300)
    light = appended(LightModel.base(ModelSpec()), x[base], [str(v) for v in y[base]])
    light = appended(light, rot(x[shots]), [str(v) for v in y[shots]])
    user = np.mean(
        [p.label == str(t) for p, t in zip(light.predict(rot(x[test])), y[test], strict=True)]
    )
    standard = np.mean(
        [p.label == str(t) for p, t in zip(light.predict(x[test]), y[test], strict=True)]
    )
    assert (round(float(user), 4), round(float(standard), 4)) == (0.7033, 0.9267)


def wine_stream(metric: str, seed: int) -> tuple[float, list[str]]:
    """The bench's wine stream in-process, one seed: predict each sample, learn it in
    batches of 50 once 50 more have been predicted. Accuracy, and each update's metric."""
    data = load_wine()
    order = np.random.default_rng(seed).permutation(len(data.target))
    x, y = data.data[order].astype(np.float32), data.target[order]
    light = LightModel.base(ModelSpec(metric=metric))  # type: ignore[arg-type]
    releases = list(range(100, len(y), 50))
    hits: list[bool] = []
    chosen: list[str] = []
    for start, end in zip(releases, [*releases[1:], len(y)], strict=True):
        learned = start - 50
        light = appended(
            light, x[learned - 50 : learned], [str(v) for v in y[learned - 50 : learned]]
        )
        chosen.append(METRICS[int(light.arrays["knn.metric"][0])])
        hits += [
            p.label == str(t)
            for p, t in zip(light.predict(x[start:end]), y[start:end], strict=True)
        ]
    return float(np.mean(hits)), chosen


def test_auto_chooses_euclidean_on_standardized_numeric_features() -> None:
    # Cosine on standardized features ignores how far a sample lies from the mean; with
    # metric = "auto" the memory's leave-one-out vote picks euclidean there.
    auto, chosen = wine_stream("auto", seed=1)
    cosine, kept = wine_stream("cosine", seed=1)
    assert kept == ["cosine", "cosine"]  # an explicit metric is honoured
    assert chosen == ["euclidean", "cosine"]  # pinned: decided again at each update
    assert (round(auto, 4), round(cosine, 4)) == (0.9744, 0.9359)  # pinned


def test_an_auto_metric_answers_the_same_on_numpy_and_torch_and_survives_a_round_trip() -> None:
    spec = ModelSpec(head="knn")
    assert spec.metric == "auto"
    x, y = units(seed=4)
    model = run_update(Model.base(spec), x, y, NO_REPLAY, [], UpdateParams())
    light = appended(LightModel.base(spec), x, y)
    want_code = model.head.tensors()["knn.metric"].numpy()
    np.testing.assert_array_equal(light.arrays["knn.metric"], want_code)
    assert METRICS[int(want_code[0])] == "euclidean"
    query = units(seed=3, n=40)[0]
    with torch.no_grad():
        want = model.rank_encoded(model.rows(query), 2)
    again = LightModel.from_bytes(light.to_bytes())
    torch_again = Model.from_bytes(light.to_bytes())  # the daemon's file, read by the worker
    assert torch_again.head.metric == "euclidean"  # type: ignore[union-attr]
    with torch.no_grad():
        reread = torch_again.rank_encoded(torch_again.rows(query), 2)
    got = again.rank_encoded(again.rows(query), 2)
    for w, g, r in zip(want, got, reread, strict=True):
        assert [p.label for p in g] == [p.label for p in w] == [p.label for p in r]
        np.testing.assert_allclose([p.score for p in g], [p.score for p in w], atol=1e-6)
        np.testing.assert_allclose([p.score for p in r], [p.score for p in w], atol=1e-6)


def test_a_file_without_a_stored_metric_votes_as_before() -> None:
    # Versions written before metric = "auto" hold no knn.metric: under "auto" they vote
    # with cosine (the old default); a damaged code is refused with what to do.
    x, y = units(seed=2)
    spec = ModelSpec(head="knn", metric="cosine")
    old = appended(LightModel.base(spec), x, y)
    arrays = {k: v for k, v in old.arrays.items() if k not in ("knn.metric", "knn.balance")}
    query = units(seed=3, n=40)[0]
    under_auto = LightModel(ModelSpec(head="knn"), old.labels, 3, old.sample_count, arrays)
    assert [p.label for p in under_auto.predict(query)] == [p.label for p in old.predict(query)]
    bad = {**arrays, "knn.metric": np.array([7], dtype=np.int64)}
    with pytest.raises(ModelError, match="restore"):
        LightModel(ModelSpec(head="knn"), old.labels, 3, old.sample_count, bad)
