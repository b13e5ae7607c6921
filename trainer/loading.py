"""A weights file to the model that serves it: numpy for vector models, torch for the others.

The one place that decides whether a model needs torch (docs/architecture.md, "Where torch
is imported"): a vector backbone's head is served by :class:`LightModel`; image, text and
custom backbones by the torch :class:`~tailord.trainer.model.Model`, imported only then.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, TypeAlias

from tailord.trainer.light import LightModel, serves_light
from tailord.trainer.spec import ModelSpec
from tailord.trainer.weights import read_fields, read_metadata

if TYPE_CHECKING:
    from tailord.trainer.model import Model

# What the daemon serves; both answer predict_encoded, rank_encoded, estimate_encoded…
ServedModel: TypeAlias = "LightModel | Model"


def needs_torch(spec: ModelSpec) -> bool:
    """Whether serving or updating ``spec`` takes torch: any backbone but vectors (serving),
    any head but k-NN (a worker trains it)."""
    return not serves_light(spec) or spec.head != "knn"


def torch_missing(spec: ModelSpec) -> str | None:
    """What to do when ``spec`` needs torch and it is not installed; None when all is well."""
    if not needs_torch(spec) or importlib.util.find_spec("torch") is not None:
        return None
    return (
        f'[model] backbone = "{spec.backbone}", head = "{spec.head}" needs torch, which is '
        "not installed: install tailord with its torch extra (pip install 'tailord[torch]'), "
        'or use backbone = "vector" with head = "knn", which runs on numpy'
    )


def load_model(data: bytes) -> ServedModel:
    """Parse a weights file; anything malformed raises ModelError."""
    spec, _, _, _ = read_fields(read_metadata(data))
    if serves_light(spec):
        return LightModel.from_bytes(data)
    from tailord.trainer.model import Model  # torch: imported here, and only for these

    return Model.from_bytes(data)


def base_model(spec: ModelSpec) -> ServedModel:
    """Version 0 of ``spec``: no labels, nothing learned."""
    if serves_light(spec):
        return LightModel.base(spec)
    from tailord.trainer.model import Model

    return Model.base(spec)
