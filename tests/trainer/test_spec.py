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
        "metric": "cosine",
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
    with pytest.raises(ModelError, match="unknown key 'epoch'"):
        cls.from_dict({"epoch": 3})


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"backbone": "audio"}, "backbone 'audio' is unknown"),
        ({"backbone": "pkg.mod"}, "or to 'package.module:factory'"),
        ({"head": "rf"}, "head 'rf' is unknown; set it to one of knn, linear, mlp, auto"),
        ({"weighting": "gauss"}, "set it to one of distance, uniform"),
        ({"image_channels": 2}, "image_channels is 2"),
        ({"updatable": ["x.*"]}, "applies to a package.module:factory backbone only"),
        ({"backbone": "p.m:f", "updatable": ["x.*"]}, 'set head = "linear" or "mlp"'),
        ({"metric": "manhattan"}, "set it to one of cosine, euclidean"),
        ({"k": 0}, r"k is 0; set it to an integer >= 1"),
        ({"k": "5"}, r"k is '5'"),
        ({"k": True}, r"k is True"),
        ({"dim": 0}, r"dim is 0"),
    ],
)
def test_bad_model_spec_is_refused(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        ModelSpec.from_dict(fields)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"epochs": 0}, "epochs is 0"),
        ({"epochs": True}, "epochs is True"),
        ({"batch_size": 0}, "batch_size is 0"),
        ({"learning_rate": 0}, "learning_rate is 0"),
        ({"learning_rate": float("nan")}, "learning_rate is nan"),
        ({"learning_rate": "0.1"}, "learning_rate is '0.1'"),
        ({"replay": -1}, "replay is -1"),
        ({"seed": 2**64}, "seed is"),
        ({"optimizer": "rmsprop"}, "optimizer 'rmsprop' is unknown; set it to one of adam, sgd"),
        ({"momentum": 1.0}, "momentum is 1.0"),
        ({"beta2": -0.1}, "beta2 is -0.1"),
        ({"eps": 0}, "eps is 0"),
        ({"weight_decay": -1}, "weight_decay is -1"),
        ({"shuffle": 1}, "shuffle is 1"),
        ({"device": "tpu"}, "device 'tpu' is unknown"),
    ],
)
def test_bad_update_params_are_refused(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        UpdateParams.from_dict(fields)


def test_task_is_classify_or_regress_and_regress_refuses_auto() -> None:
    assert ModelSpec(task="regress", head="linear").regress
    assert not ModelSpec().regress
    with pytest.raises(ModelError, match=r"task 'predict' is unknown; set it to one of classify"):
        ModelSpec(task="predict")
    with pytest.raises(ModelError, match='with task = "regress" set head = "knn", "linear"'):
        ModelSpec(task="regress", head="auto")
    with pytest.raises(ModelError, match="max_memory is 0; set it to an integer >= 1"):
        ModelSpec(task="regress", max_memory=0)
