"""LightModel (numpy) against Model (torch) on the same weights: the same answers within 1e-6."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
import safetensors.numpy

from tailord.trainer.errors import ModelError
from tailord.trainer.light import LightModel, serves_light
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update
from tailord.trainer.weights import metadata_of, read_metadata

Clusters = Callable[..., tuple[npt.NDArray[np.float32], list[str]]]  # see conftest.py
NO_REPLAY = np.zeros((0, 8), dtype=np.float32)
FAST = UpdateParams(epochs=3, batch_size=16)


def trained(clusters: Clusters, spec: ModelSpec, per_label: int = 30) -> Model:
    x, y = clusters(["a", "b", "c"], per_label, seed=1)
    if spec.regress:
        y = [f"{float(v):.3f}" for v in x[:, 0] * 2 + x[:, 1]]
    return run_update(Model.base(spec), x, y, NO_REPLAY, [], FAST)


def assert_same_answers(model: Model, light: LightModel, x: npt.NDArray[np.float32]) -> None:
    assert light.learned == model.learned
    assert light.sample_count == model.sample_count
    assert light.labels == model.labels
    if model.spec.regress:
        want = [e.value for e in model.estimate(x)]
        got = [e.value for e in light.estimate(x)]
        # 1e-6 of the targets' scale: a float32 near 8 is only resolved to ~1e-6 itself.
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * max(1.0, *map(abs, want)))
        return
    top = len(model.labels)
    for want_row, got_row in zip(
        model.rank_encoded(model.rows(x), top), light.rank_encoded(light.rows(x), top), strict=True
    ):
        assert [p.label for p in got_row] == [p.label for p in want_row]
        np.testing.assert_allclose(
            [p.score for p in got_row], [p.score for p in want_row], rtol=1e-6, atol=1e-6
        )


SPECS = [
    ModelSpec(head="knn", metric="cosine"),
    ModelSpec(head="knn", metric="euclidean"),
    ModelSpec(head="knn", metric="euclidean", weighting="uniform", k=7),
    ModelSpec(head="knn", k=1),
    ModelSpec(head="linear"),
    ModelSpec(head="mlp", hidden=16),
    ModelSpec(head="auto", auto_min_samples=10),
    ModelSpec(head="auto", auto_min_samples=1000),  # read, but no longer decides (auto.py)
    ModelSpec(task="regress", head="knn", metric="euclidean"),
    ModelSpec(task="regress", head="knn", metric="cosine", k=3),
    ModelSpec(task="regress", head="linear"),
    ModelSpec(task="regress", head="mlp", hidden=8),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.task}-{s.head}-{s.metric}-{s.k}")
@pytest.mark.parametrize("queries", [3, 40])  # torch.cdist computes directly up to 25 rows
def test_numpy_answers_equal_torchs(clusters: Clusters, spec: ModelSpec, queries: int) -> None:
    model = trained(clusters, spec)
    light = LightModel.from_bytes(model.to_bytes())
    x, _ = clusters(["a", "b", "c"], queries, seed=7)
    assert_same_answers(model, light, x)


def test_a_small_memory_answers_like_torch(clusters: Clusters) -> None:
    """Fewer rows than k, and fewer than 25 on both sides of the distance matrix."""
    model = trained(clusters, ModelSpec(head="knn", metric="euclidean", k=9), per_label=2)
    light = LightModel.from_bytes(model.to_bytes())
    x, _ = clusters(["a", "c"], 4, seed=3)
    assert_same_answers(model, light, x)


@pytest.mark.parametrize("spec", SPECS[:1] + SPECS[4:7] + SPECS[8:9])
def test_the_base_file_is_the_torch_base_file(spec: ModelSpec) -> None:
    spec = ModelSpec.from_dict({**spec.to_dict(), "dim": 8})
    mine, torchs = LightModel.base(spec).to_bytes(), Model.base(spec).to_bytes()
    # The same file up to the order of the header's keys (safetensors writes a hash map).
    assert read_metadata(mine) == read_metadata(torchs)
    mine_arrays, torch_arrays = safetensors.numpy.load(mine), safetensors.numpy.load(torchs)
    assert {k: (a.dtype, a.shape) for k, a in mine_arrays.items()} == {
        k: (a.dtype, a.shape) for k, a in torch_arrays.items()
    }
    light = LightModel.from_bytes(Model.base(spec).to_bytes())
    assert not light.learned
    with pytest.raises(ModelError, match="drop samples into the inbox"):
        light.check_learned()


def test_a_round_trip_keeps_the_file(clusters: Clusters) -> None:
    data = trained(clusters, ModelSpec(head="auto", auto_min_samples=10)).to_bytes()
    again = LightModel.from_bytes(data).to_bytes()
    assert read_metadata(again) == read_metadata(data)
    for name, array in safetensors.numpy.load(data).items():
        np.testing.assert_array_equal(safetensors.numpy.load(again)[name], array)


def test_only_vector_backbones_are_light() -> None:
    assert serves_light(ModelSpec())
    assert not serves_light(ModelSpec(backbone="image"))
    assert not serves_light(ModelSpec(backbone="text"))


def test_a_file_of_another_head_is_refused(clusters: Clusters) -> None:
    data = trained(clusters, ModelSpec(head="linear")).to_bytes()
    light = LightModel.from_bytes(data)
    # A linear layer's tensors under a knn spec's metadata: damaged, or the wrong spec.
    metadata = metadata_of(ModelSpec(head="knn"), light.labels, 8, 90)
    arrays = light.arrays
    with pytest.raises(ModelError, match="belongs to another head"):
        LightModel.from_bytes(safetensors.numpy.save(arrays, metadata=metadata))


def test_loading_and_answering_never_imports_torch(clusters: Clusters) -> None:
    data = trained(clusters, ModelSpec(head="knn")).to_bytes()
    code = (
        "import sys, numpy as np\n"
        "from tailord.trainer.light import LightModel\n"
        "m = LightModel.from_bytes(sys.stdin.buffer.read())\n"
        "m.predict(np.ones((2, 8), dtype=np.float32))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, check=True
    ).stdout
    assert out.strip() == b"False"


def test_a_base_without_dim_is_fixed_by_the_first_samples(clusters: Clusters) -> None:
    """``dim`` unset: version 0 has no input size; the first update's samples fix it."""
    spec = ModelSpec()
    assert spec.dim is None
    light = LightModel.from_bytes(Model.base(spec).to_bytes())
    assert light.dim is None
    assert not light.learned
    x, y = clusters(["a", "b"], 3, seed=8)
    model = run_update(Model.base(spec), x, y, NO_REPLAY, [], FAST)
    assert_same_answers(model, LightModel.from_bytes(model.to_bytes()), x)


def test_an_updates_own_k_votes_like_torchs(clusters: Clusters) -> None:
    model = trained(clusters, ModelSpec(head="knn", k=5))
    light = LightModel.from_bytes(model.to_bytes()).with_k(1)
    assert light.spec.k == 1
    x, _ = clusters(["a", "b", "c"], 30, seed=9)
    assert_same_answers(model.with_k(1), light, x)
