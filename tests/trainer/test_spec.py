from __future__ import annotations

import pytest

from tailord.trainer.errors import ModelError, TrainerError
from tailord.trainer.spec import ModelSpec, UpdateParams


def test_root_error_uses_its_docstring_as_default_message() -> None:
    assert str(TrainerError()) == TrainerError.__doc__
    assert str(ModelError()) == ModelError.__doc__
    assert str(ModelError("custom")) == "custom"


def test_defaults_round_trip_through_dicts() -> None:
    assert ModelSpec.from_dict(ModelSpec().to_dict()) == ModelSpec()
    assert UpdateParams.from_dict(UpdateParams().to_dict()) == UpdateParams()
    assert ModelSpec().to_dict() == {
        "backbone": "vector",
        "task": "classify",
        "head": "knn",
        "k": 5,
        "metric": "auto",
        "weighting": "distance",
        "max_per_label": 1000,
        "max_memory": 10000,
        "hidden": 64,
        "auto_min_samples": 10,
        "dim": None,
        "image_size": 32,
        "image_channels": 1,
        "updatable": [],
    }
    custom = ModelSpec(backbone="pkg.mod:make", head="mlp", updatable=("head.*",))
    assert ModelSpec.from_dict(custom.to_dict()) == custom


@pytest.mark.parametrize(
    ("backbone", "kind"),
    [("vector", "vector"), ("image", "image"), ("text", "text"), ("pkg.mod:make", "vector")],
)
def test_input_kind_follows_the_backbone(backbone: str, kind: str) -> None:
    assert ModelSpec(backbone=backbone).input_kind == kind


def test_integer_learning_rate_from_toml_becomes_float() -> None:
    params = UpdateParams.from_dict({"learning_rate": 1})
    assert isinstance(params.learning_rate, float)


@pytest.mark.parametrize("cls", [ModelSpec, UpdateParams])
def test_unknown_key_is_named(cls: type[ModelSpec] | type[UpdateParams]) -> None:
    with pytest.raises(ModelError, match=r"unknown key 'epoch' in \[(model|update)\]"):
        cls.from_dict({"epoch": 3})


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"backbone": "audio"}, 'backbone = "audio": must be one of vector, image, text'),
        ({"backbone": "pkg.mod"}, "or 'package.module:factory'"),
        (
            {"head": "rf"},
            'head = "rf": must be one of "knn", "linear", "mlp", "auto"; for example head = "knn"',
        ),
        ({"weighting": "gauss"}, 'must be one of "distance", "uniform"'),
        ({"image_channels": 2}, "image_channels = 2: must be one of 1, 3"),
        ({"updatable": ["x.*"]}, "applies to a package.module:factory backbone only"),
        ({"backbone": "p.m:f", "updatable": ["x.*"]}, 'set head = "linear" or "mlp"'),
        ({"metric": "manhattan"}, 'must be one of "auto", "cosine", "euclidean"'),
        ({"k": 0}, r"\[model\] k = 0: must be an integer >= 1; for example k = 5"),
        ({"k": "5"}, 'k = "5": must be an integer, not a string'),
        ({"k": True}, "k = true: must be an integer, not true or false"),
        ({"dim": 0}, "dim = 0: must be an integer >= 1; for example dim = 384"),
        ({"updatable": ["a", ""]}, "must be a string of length >= 1"),
        ({"task": "predict"}, 'task = "predict": must be one of "classify", "regress"'),
    ],
)
def test_bad_model_spec_is_refused(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        ModelSpec.from_dict(fields)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"epochs": 0}, r"\[update\] epochs = 0: must be an integer >= 1; for example epochs = 10"),
        ({"epochs": True}, "epochs = true: must be an integer"),
        ({"batch_size": 0}, "batch_size = 0: must be an integer >= 1"),
        ({"learning_rate": 0}, "learning_rate = 0: must be a number > 0.0"),
        ({"learning_rate": float("nan")}, "learning_rate = nan: must be a finite number"),
        ({"learning_rate": float("inf")}, "learning_rate = inf: must be a finite number"),
        ({"learning_rate": "0.1"}, 'learning_rate = "0.1": must be a number, not a string'),
        ({"replay": -1}, "replay = -1: must be an integer >= 0"),
        ({"seed": 2**64}, "seed = 18446744073709551616: must be an integer <= 9223372036854775807"),
        ({"optimizer": "rmsprop"}, 'optimizer = "rmsprop": must be one of "adam", "sgd"'),
        ({"momentum": 1.0}, "momentum = 1.0: must be a number < 1.0; for example momentum = 0.9"),
        ({"beta2": -0.1}, "beta2 = -0.1: must be a number >= 0.0"),
        ({"eps": 0}, "eps = 0: must be a number > 0.0; for example eps = 1e-08"),
        ({"weight_decay": -1}, "weight_decay = -1: must be a number >= 0.0"),
        ({"shuffle": 1}, "shuffle = 1: must be true or false, not an integer"),
        ({"device": "tpu"}, 'device = "tpu": must be one of "auto", "cpu", "cuda"'),
    ],
)
def test_bad_update_params_are_refused(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        UpdateParams.from_dict(fields)


def test_task_is_classify_or_regress_and_regress_refuses_auto() -> None:
    assert ModelSpec(task="regress", head="linear").regress
    assert not ModelSpec().regress
    with pytest.raises(ModelError, match='with task = "regress" set head = "knn", "linear"'):
        ModelSpec(task="regress", head="auto")  # a rule across keys holds in code too
    with pytest.raises(ModelError, match="max_memory = 0: must be an integer >= 1"):
        ModelSpec.from_dict({"task": "regress", "max_memory": 0})
