"""What a model is built from (ModelSpec), how an update trains it (UpdateParams) and when a
candidate may replace the current version (GateParams).

Frozen msgspec structs. Types, choices and bounds are declared on the fields and checked when a
table becomes a struct (``from_dict``, the daemon's config loader), with errors that name the
key (see ``tailord.trainer.structs``); rules across fields are in ``__post_init__``. A struct
built in code is trusted: mypy checks its ``Literal`` choices. They round-trip through plain
dicts so that the daemon can read them from TOML, pass them to the worker process and store
them in a manifest. No torch or numpy here: the config loader imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal, get_args

import msgspec

from tailord.trainer.errors import ModelError
from tailord.trainer.structs import convert

Task = Literal["classify", "regress"]
Head = Literal["knn", "linear", "mlp", "auto"]
Metric = Literal["auto", "cosine", "euclidean"]
Weighting = Literal["distance", "uniform"]
Optimizer = Literal["adam", "sgd"]
Device = Literal["auto", "cpu", "cuda"]

BUILTIN_BACKBONES = ("vector", "image", "text")
TASKS: tuple[Task, ...] = get_args(Task)
HEADS: tuple[Head, ...] = get_args(Head)

_MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed refuses larger seeds
Positive = Annotated[int, msgspec.Meta(ge=1)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Share = Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]  # momentum and Adam's betas
Glob = Annotated[str, msgspec.Meta(min_length=1)]


class UpdateParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How one update trains a head; k-NN heads only append and ignore most of these."""

    epochs: Positive = 10
    learning_rate: Annotated[float, msgspec.Meta(gt=0.0)] = 0.01
    batch_size: Positive = 32
    seed: Annotated[int, msgspec.Meta(ge=0, le=_MAX_SEED)] = 0
    replay: Count = 1000  # at most this many earlier samples mixed into an update (trained heads)
    optimizer: Optimizer = "adam"
    momentum: Share = 0.9  # sgd only
    beta1: Share = 0.9  # adam only
    beta2: Share = 0.999  # adam only
    eps: Annotated[float, msgspec.Meta(gt=0.0)] = 1e-8  # adam only
    weight_decay: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    shuffle: bool = True  # a new sample order each epoch (seeded)
    device: Device = "auto"  # "auto": cuda when torch sees a GPU, else cpu

    def to_dict(self) -> dict[str, object]:
        return msgspec.structs.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> UpdateParams:
        return convert(cls, d, "update")


class ModelSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a model is built: a frozen backbone and an updatable head."""

    backbone: str = "vector"  # "vector" | "image" | "text" | "package.module:factory"
    task: Task = "classify"  # "classify" (labels, cross-entropy) | "regress" (numbers, MSE)
    head: Head = "knn"
    k: Positive = 5  # neighbours that vote in a k-NN head
    # distance of a k-NN head; "auto": cosine, or euclidean on standardized features when
    # that wins the memory's leave-one-out vote (trainer/vote.py)
    metric: Metric = "auto"
    weighting: Weighting = "distance"  # k-NN vote: "distance" (inverse distance) or "uniform"
    max_per_label: Positive = 1000  # k-NN memory rows per label; beyond it a per-label reservoir
    max_memory: Positive = 10000  # regress k-NN: memory rows in all; beyond it one reservoir
    hidden: Positive = 64  # width of the mlp head's hidden layer
    auto_min_samples: Positive = 10  # auto head: no longer decides (trainer/auto.py measures)
    dim: Positive | None = None  # input size; None lets the first samples fix it
    # image backbone: images are resized to image_size x image_size
    image_size: Annotated[int, msgspec.Meta(ge=8, le=512)] = 32
    image_channels: Literal[1, 3] = 1  # image backbone: 1 (grayscale) or 3 (RGB)
    updatable: tuple[Glob, ...] = ()  # custom backbone: glob patterns of parameters to train

    # Examples for keys whose default shows nothing useful (see structs.convert).
    examples: ClassVar[dict[str, str]] = {"dim": "384", "updatable": '["head.*"]'}

    def __post_init__(self) -> None:
        if not (self.backbone in BUILTIN_BACKBONES or _is_factory(self.backbone)):
            raise ModelError(
                f'[model] backbone = "{self.backbone}": must be one of '
                f"{', '.join(BUILTIN_BACKBONES)} or 'package.module:factory' (your torch "
                'module); for example backbone = "vector"'
            )
        if self.task == "regress" and self.head == "auto":
            raise ModelError(
                '[model] head = "auto" switches by the samples each label has, and a regress '
                'model has no labels; with task = "regress" set head = "knn", "linear" or "mlp"'
            )
        if self.updatable and not self.is_custom:
            raise ModelError(
                "[model] updatable applies to a package.module:factory backbone only; "
                "remove it, or name your own torch module as the backbone"
            )
        if self.updatable and self.head not in ("linear", "mlp"):
            raise ModelError(
                "[model] updatable trains the backbone with the head, which needs a trained "
                'head: set head = "linear" or "mlp", or remove updatable'
            )

    @property
    def is_custom(self) -> bool:
        return self.backbone not in BUILTIN_BACKBONES

    @property
    def input_kind(self) -> str:
        """What a sample's stored payload is: "vector" (float32), "text" or "image" bytes.

        A custom backbone takes vectors: its module gets float32 rows of ``dim`` values.
        """
        return self.backbone if self.backbone in ("image", "text") else "vector"

    @property
    def regress(self) -> bool:
        """Numeric targets (MSE) rather than labels (cross-entropy)."""
        return self.task == "regress"

    def to_dict(self) -> dict[str, object]:
        # The manifest's "spec" (and the weights' metadata) is this dict as JSON: keep its
        # keys, order and types (updatable a list) as they are on disk.
        d = msgspec.structs.asdict(self)
        d["updatable"] = list(self.updatable)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> ModelSpec:
        return convert(cls, d, "model")


class GateParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Whether a candidate may become current (the gate itself is in ``trainer.gate``)."""

    enabled: bool = True  # false promotes every candidate
    # share of each label's new samples kept out of training to judge the candidate
    holdout: Annotated[float, msgspec.Meta(ge=0.0, le=0.9)] = 0.2
    # largest allowed drop of canary accuracy (0.05 = 5 points)
    max_regression: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.05
    canary: Count = 200  # earlier samples, at most, in the canary set
    # once the judged candidate passes, a trained head learns the held-out samples too
    # (trainer/refit.py); false publishes the judged candidate as it is
    refit: bool = True

    def to_dict(self) -> dict[str, object]:
        return msgspec.structs.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> GateParams:
        return convert(cls, d, "gate")


def _is_factory(name: str) -> bool:
    module, _, attr = name.partition(":")
    return bool(
        module
        and attr
        and all(part.isidentifier() for part in module.split("."))
        and attr.isidentifier()
    )
